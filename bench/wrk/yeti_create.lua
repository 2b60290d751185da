-- POST /api/rest/admin/api-accesses with a new login on every request (the stand-in Yeti's
-- own write rate). BENCH_TOKEN is an admin JWT.
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
wrk.headers["Content-Type"] = "application/vnd.api+json"
local n = 0
function request()
  n = n + 1
  local body = '{"data":{"type":"api-accesses","attributes":{"customer-id":42,"login":"wrk-' .. n ..
    '","password":"0123456789abcdef0123456789abcdef","account-ids":[],"allowed-ips":["10.0.0.0/8"]}}}'
  return wrk.format("POST", wrk.path, nil, body)
end
