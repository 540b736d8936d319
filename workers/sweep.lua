-- KEYS: kombu's unacked hash, then per task: record, message copy, suspect mark.
-- ARGV: now, grace (s), mark ttl (ms), most re-queues, then the task ids.
-- Any doubt (an unreadable key, a copy that does not parse) means "leave it alone".
-- It only looks and marks: a task due to go back (or to be given up) is returned with what
-- its audited re-queue needs - {id, queue, message, requeues so far} (or {id, requeues}) -
-- and the caller writes it together with its audit record (workers.contract.enqueue).
local function call(...)
  local reply = redis.pcall(...)
  if type(reply) == 'table' and reply.err then return nil end
  return reply
end
local function route(id, raw)
  local ok, msg = pcall(cjson.decode, raw)
  if not ok or type(msg) ~= 'table' then return nil end
  local props, headers = msg['properties'], msg['headers']
  if type(props) ~= 'table' or type(headers) ~= 'table' or headers['id'] ~= id then
    return nil
  end
  local info, tag = props['delivery_info'], props['delivery_tag']
  if type(info) ~= 'table' or type(tag) ~= 'string' or tag == '' then return nil end
  local queue = info['routing_key']
  if type(queue) ~= 'string' or #queue > 200 or not string.find(queue, '^[%w_][%w_%.%-]*$') then
    return nil
  end
  local kind = redis.call('TYPE', queue)['ok']
  if kind ~= 'list' and kind ~= 'none' then return nil end
  return tag, queue
end
local now, grace, most = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[4])
local missing, by_queue = {}, {}
for i = 5, #ARGV do
  local k = 2 + (i - 5) * 3
  local task = {id = ARGV[i], record = KEYS[k], copy_key = KEYS[k + 1], mark = KEYS[k + 2]}
  if call('HGET', task.record, 'state') == 'queued' then
    task.raw = call('GET', task.copy_key)
    local tag, queue = nil, nil
    if task.raw then tag, queue = route(task.id, task.raw) end
    if tag then
      if call('HEXISTS', KEYS[1], tag) ~= 0 or redis.call('LPOS', queue, task.raw, 'RANK', -1) then
        redis.call('DEL', task.mark)
      else
        task.queue = queue
        by_queue[queue] = by_queue[queue] or {}
        by_queue[queue][tag] = task
        missing[#missing + 1] = task
      end
    end
  end
end
-- Slow path, only for what the exact match missed: any queued entry with the delivery tag.
for queue, wanted in pairs(by_queue) do
  local size = redis.call('LLEN', queue)
  local start = 0
  while start < size and next(wanted) do
    for _, item in ipairs(redis.call('LRANGE', queue, start, start + 499)) do
      local at = string.find(item, '"delivery_tag"', 1, true)
      local tag = at and string.match(item, '^"delivery_tag"%s*:%s*"([^"]+)"', at)
      if tag and wanted[tag] then
        wanted[tag].held = true
        wanted[tag] = nil
      end
    end
    start = start + 500
  end
end
local due, suspected, abandon = {}, {}, {}
for _, task in ipairs(missing) do
  if task.held then
    redis.call('DEL', task.mark)
  else
    local since = tonumber(call('GET', task.mark))
    if not since then
      redis.call('SET', task.mark, ARGV[1], 'PX', ARGV[3])
      suspected[#suspected + 1] = task.id
    elseif now - since >= grace then
      local requeues = call('HGET', task.record, 'requeues') or ''
      if (tonumber(requeues) or 0) >= most then
        abandon[#abandon + 1] = {task.id, requeues}
      else
        due[#due + 1] = {task.id, task.queue, task.raw, requeues}
      end
    end
  end
end
return {due, suspected, abandon}
