"""Helpers the tests share: plain functions, classes and constants, no pytest fixtures.

Fixtures live in the ``conftest.py`` files and build on these; a test imports helpers from
here, never from a ``conftest`` module (pytest imports each conftest under a name of its own,
so importing one again gives a second copy of its state). Import a helper from the module
that owns it: this package re-exports nothing, so importing one helper loads only what it
needs.

- ``logs``: child processes whose log tails a failing test's report shows.
- ``redis_server``: what Redis refused (``ACL LOG``) kept beside its log.
- ``processes``: a worker's environment, waiting for a child or a condition.
- ``gateways``: a running gateway, a registered API client, another gateway started on demand.
- ``api``: problem+json checks, minted and forged tokens, rate-limit housekeeping.
- ``console``: a gateway with the web console on, signing in through its forms.
- ``messages``: broker messages built and watched the way the gateway does.
- ``replies``: Redis replies as a client that does not decode responses returns them, and
  raw commands; ``broker``: kombu channels as the Redis channels they are; ``audit``:
  audit entries read back.
- ``stacks`` / ``stack_options``: private stacks (own Redis, gateway, workers) and what
  they run with.
- ``observability``: every path a task can take, with canaries.
- ``sentry_ingest``, ``tcp_proxy``: stand-ins for Sentry's ingest and a lossy network.
- ``up``: driving a ``taskgate up`` process.
- ``submissions``: the type of the ``make_submission`` fixture.
- ``outbound``: stand-in resolvers and refusal reasons for the SSRF guard's tests;
  ``validation``: pydantic validation errors as tests read them; ``token_forgery``: access
  tokens built and forged by hand.
- ``audit_chain``: an audit chain to write, read raw and tamper with.
- ``vault_secrets``: canaries, a vault key ring and a stand-in client for the vault's tests.
- ``key_folders``: key folders read and written by hand for the key-store tests.
- ``envelopes``: sealed envelopes forged and damaged for the sealing tests.
- ``https_origin``: a local HTTPS origin with a throwaway PKI and stand-in DNS (safe fetch);
  ``images``: images encoded, thumbnailed and refused for the thumbnail tests.
- ``smtp``: credentials, payloads and a local SMTP sink for the ``email.send`` tests.
- ``stored_keys``: the keys a test left in Redis, past heartbeats and the audit log.
- ``bursts``: a burst of submissions across a Redis restart (reliability tests);
  ``metrics_run``: the metrics tests' deployment, requests and scrapes.
- ``sweeps``: lost broker messages made and found for the sweeper tests.
"""
