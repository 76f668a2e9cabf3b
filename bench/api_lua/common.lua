-- Shared by single.lua and batch.lua (wrk 4.x, LuaJIT). Loaded with dofile() from each script.
-- The token comes from BENCH_TOKEN so it never appears on a command line.
-- Each wrk thread counts answers by status and the events the server accepted; done() prints one
-- machine-readable line that bench/api.py parses ("BENCH_JSON {...}").

local M = {}

M.token = os.getenv("BENCH_TOKEN") or error("BENCH_TOKEN is not set")
M.threads = {}

function M.install()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. M.token

  setup = function(thread)
    table.insert(M.threads, thread)
    thread:set("tid", #M.threads)
  end

  init = function(args)
    counter = 0
    ok = 0          -- responses with a 2xx status
    bad = 0         -- any other status
    accepted = 0    -- events the server accepted (1 per 202 single, "accepted" of a batch)
    first_bad = ""  -- status and start of the first non-2xx body, to say why
  end

  response = function(status, headers, body)
    if status >= 200 and status < 300 then
      ok = ok + 1
      local n = body and body:match('"accepted":(%d+)')
      accepted = accepted + (n and tonumber(n) or 1)
    else
      bad = bad + 1
      if first_bad == "" then
        first_bad = tostring(status) .. " " .. string.sub(body or "", 1, 200)
      end
    end
  end

  done = function(summary, latency, requests)
    local ok_total, bad_total, accepted_total, why = 0, 0, 0, ""
    for _, thread in ipairs(M.threads) do
      ok_total = ok_total + (thread:get("ok") or 0)
      bad_total = bad_total + (thread:get("bad") or 0)
      accepted_total = accepted_total + (thread:get("accepted") or 0)
      local fb = thread:get("first_bad") or ""
      if why == "" and fb ~= "" then why = fb end
    end
    why = why:gsub('\\', '\\\\'):gsub('"', '\\"'):gsub("[%c]", " ")
    io.write(string.format(
      'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,' ..
      '"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d,' ..
      '"ok":%d,"bad":%d,"accepted":%d,"first_bad":"%s",' ..
      '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
      summary.requests, summary.duration, summary.bytes, summary.errors.connect,
      summary.errors.read, summary.errors.write, summary.errors.status, summary.errors.timeout,
      ok_total, bad_total, accepted_total, why,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
      latency.mean))
  end
end

return M
