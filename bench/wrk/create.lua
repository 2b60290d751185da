-- POST /Users with a new userName on every request.
dofile(os.getenv("BENCH_DIR") .. "/common.lua")
local n = 0
local prefix = os.getenv("BENCH_PREFIX") or "new"
function request()
  n = n + 1
  local body = '{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"' .. prefix .. "-" .. tid .. "-" .. n ..
    '@bench.example","active":true,"name":{"givenName":"Bench","familyName":"Mark"},' ..
    '"emails":[{"value":"bench@bench.example","type":"work","primary":true}]}'
  return wrk.format("POST", wrk.path, nil, body)
end
