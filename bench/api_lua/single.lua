-- POST /api/v1/events/: one order.placed event per request, a different recipient and order
-- each time (thread id + counter), shaped like the README's example.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(here .. "common.lua")
common.install()

local PATH = "/api/v1/events/"
local FMT = '{"event":"order.placed","to":{"email":"buyer%d.%d@example.com","name":"Buyer %d"},' ..
  '"data":{"order_id":"A-%d-%d","total":"59.90",' ..
  '"items":[{"name":"Wool coat","qty":1},{"name":"Rain boots","qty":2}]}}'

request = function()
  counter = counter + 1
  local body = string.format(FMT, tid, counter, counter, tid, counter)
  return wrk.format(nil, PATH, nil, body)
end
