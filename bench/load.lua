-- wrk script: with a file of UUIDs as its argument, pings a random one of them per request;
-- without, requests "/". Prints one machine-readable RESULT line at the end.
local uuids = {}

function init(args)
  if args[1] then
    for line in io.lines(args[1]) do
      if #line > 0 then uuids[#uuids + 1] = line end
    end
  end
  math.randomseed(os.time() * 1000 + math.floor(os.clock() * 1000000))
end

function request()
  if #uuids == 0 then
    return wrk.format("GET", "/")
  end
  return wrk.format("GET", "/ping/" .. uuids[math.random(#uuids)])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d connect=%d read=%d write=%d status=%d timeout=%d " ..
    "p50_us=%d p99_us=%d max_us=%d\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
