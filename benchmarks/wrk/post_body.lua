-- wrk script for benchmarks/side_by_side.py: sends one request, the same every time, and prints
-- the figures as one JSON line at the end.
--
--   wrk -t2 -c8 -d10s -s benchmarks/wrk/post_body.lua URL -- METHOD BODY_FILE HEADERS_FILE
--
-- METHOD is GET, POST, ...; BODY_FILE holds the request body ("-" for none); HEADERS_FILE holds
-- one "Name: value" header a line ("-" for none). Headers are read from a file, not given with
-- wrk's -H, so a bearer token or API key never shows in the process list.

local function read_file(path)
  if path == nil or path == "-" or path == "" then
    return nil
  end
  local f = assert(io.open(path, "rb"))
  local data = f:read("*a")
  f:close()
  return data
end

local request_bytes

function init(args)
  local method = args[1] or "GET"
  local body = read_file(args[2])
  local headers = {}
  local text = read_file(args[3])
  if text then
    for line in text:gmatch("[^\r\n]+") do
      local name, value = line:match("^%s*([^:]+):%s*(.-)%s*$")
      if name then
        headers[name] = value
      end
    end
  end
  request_bytes = wrk.format(method, nil, headers, body)
end

function request()
  return request_bytes
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"non_2xx_3xx":%d,"connect_errors":%d,'
      .. '"read_errors":%d,"write_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,'
      .. '"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.status, e.connect, e.read, e.write,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
