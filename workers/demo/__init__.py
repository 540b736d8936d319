"""Demo tasks run by ``taskgate up``: ``email.send``, ``report.generate``, ``image.thumbnail``.

Each submodule registers its task in ``workers.contract.catalogue.default_catalogue`` when it is
imported; list the ones a worker should run in ``TASKGATE_TASK_MODULES``
(``workers.demo.email``, ``workers.demo.report``, ``workers.demo.image``).
"""
