-- POST /api/v1/events/batch/: BATCH_SIZE (default 1000) marketing.newsletter events per request,
-- every recipient different (thread id, request counter, index).
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(here .. "common.lua")
common.install()

local PATH = "/api/v1/events/batch/"
local SIZE = tonumber(os.getenv("BATCH_SIZE") or "1000")
local BODY = "Our autumn collection is here: warm wool coats, waterproof boots built for city " ..
  "rain and knitwear made from recycled yarn. This weekend only, members get 20%% off " ..
  "everything, with free delivery on orders over $50 and free returns for 60 days."
local FMT = '{"event":"marketing.newsletter","to":{"email":"reader%d.%d.%d@example.com",' ..
  '"name":"Reader %d"},"data":{"headline":"Autumn collection, %d","body":"' .. BODY .. '"}}'

request = function()
  counter = counter + 1
  local parts = {}
  for i = 1, SIZE do
    parts[i] = string.format(FMT, tid, counter, i, i, i)
  end
  local body = '{"events":[' .. table.concat(parts, ",") .. ']}'
  return wrk.format(nil, PATH, nil, body)
end
