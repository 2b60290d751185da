-- Shared by the SCIM benchmark scripts: bearer token and media type from the environment.
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
wrk.headers["Content-Type"] = "application/scim+json"
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
