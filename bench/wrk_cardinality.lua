-- Cardinality load for wrk: every request has a new path, client address, API key and parameter value.
local counter = 0
math.randomseed(os.time())
local base = math.random(1, 1000000)
request = function()
  counter = counter + 1
  local n = base * 1000000 + counter
  local path = "/api/items/" .. n .. "?q=" .. n .. "&v" .. (counter % 40) .. "=" .. n
  local headers = {}
  headers["X-Forwarded-For"] = (10 + (n % 200)) .. "." .. (math.floor(n / 65536) % 256) .. "." .. (math.floor(n / 256) % 256) .. "." .. (n % 256)
  headers["X-Api-Key"] = "key-" .. n
  return wrk.format("GET", path, headers)
end
