-- Mirror mode: POST a JSON array of exchange records (as a gateway policy would) to the mirror listener.
local records = {}
for i = 1, 50 do
  records[i] = string.format('{"method":"GET","url":"/api/items/%d?page=%d","status":200,'
    .. '"request_headers":{"authorization":"Bearer opaque-%d","x-forwarded-for":"81.2.69.%d"},'
    .. '"response_headers":{"content-type":"application/json"},'
    .. '"response_body":"{\\"id\\":%d,\\"name\\":\\"Widget\\",\\"email\\":\\"a%d@example.com\\"}"}', i, i % 7, i, i, i, i)
end
wrk.method = "POST"
wrk.path = "/apiward/v1/exchanges"
wrk.body = "[" .. table.concat(records, ",") .. "]"
wrk.headers["Content-Type"] = "application/json"
