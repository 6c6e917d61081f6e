-- wrk script: POST the same body (read from a file) to one path, e.g. a create of a Patient.
-- usage: wrk -t1 -c8 -d10s -s post.lua http://127.0.0.1:PORT -- /fhir/Patient body.json
local path, body
local headers = {["Content-Type"] = "application/fhir+json", ["Accept"] = "application/fhir+json"}
local token = os.getenv("CARERECORD_BENCH_TOKEN")  -- the harness's system token
if token then headers["Authorization"] = "Bearer " .. token end

function init(args)
  path = args[1]
  local f = assert(io.open(args[2], "rb"))
  body = f:read("*a")
  f:close()
end

function request()
  return wrk.format("POST", path, headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"bytes":%d,"errors":{"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d},"latency_us":{"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"max":%d}}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
