-- wrk pacing for `npm run bench`: before each request a connection waits a time drawn from an
-- exponential of mean 6 ms, so 64 connections arrive at about 10 k req/s at random (Poisson)
-- instead of in step; every target gets the same request rate and the p99 is not throughput.
local mean_ms = 6
function delay()
  return -math.log(1 - math.random()) * mean_ms
end
