-- POST /api/v1/orders: one of a random product (or, with the `product` option, always that
-- one: a flash sale), as a random logged-in customer, with a fresh Idempotency-Key each time
-- (as a real client sends). Tokens come one per line from a file.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local lib = require("lib")
local products
local product
local tokens = {}
local sent = 0

function init(args)
  local opts = lib.init(args)
  products = tonumber(opts.products)
  product = tonumber(opts.product)
  for line in io.lines(opts.tokens) do
    if #line > 0 then
      tokens[#tokens + 1] = line
    end
  end
end

function request()
  sent = sent + 1
  local headers = {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. tokens[math.random(1, #tokens)],
    ["Idempotency-Key"] = "bench-" .. lib.thread_tag .. "-" .. sent,
  }
  local body = string.format(
    '{"product_id": %d, "quantity": 1, "payment_method": "card"}', product or math.random(1, products)
  )
  return wrk.format("POST", "/api/v1/orders", headers, body)
end

done = lib.done
