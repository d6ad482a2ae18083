-- A realistic API request mix for wrk: varying ids, a JWT bearer, a forwarded client address.
local jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1c2VyLTQyIiwiaXNzIjoiaHR0cHM6Ly9sb2dpbi5leGFtcGxlIiwiZXhwIjo0MTAyNDQ0ODAwfQ.c2lnbmF0dXJl"
local counter = 0
request = function()
  counter = counter + 1
  local path = "/api/items/" .. (counter % 5000) .. "?fields=name,price&page=" .. (counter % 7)
  local headers = {}
  headers["Authorization"] = "Bearer " .. jwt
  headers["X-Forwarded-For"] = "81.2.69." .. (counter % 250)
  headers["Accept"] = "application/json"
  return wrk.format("GET", path, headers)
end
