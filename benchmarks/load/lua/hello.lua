-- GET / on the hello-world reference app: the same counting as the other workloads, so
-- the load generator does the same work per response on both sides of the ratio.
function request()
  return wrk.format("GET", "/")
end

function response(status, headers, body)
  count_response(status, body)
end
