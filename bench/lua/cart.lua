-- POST /api/v1/orders with a cart: three lines of three different random products, one of
-- each, as a random logged-in customer, with a fresh Idempotency-Key each time (issue 28).
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local lib = require("lib")
local products
local tokens = {}
local sent = 0

function init(args)
  local opts = lib.init(args)
  products = tonumber(opts.products)
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
    ["Idempotency-Key"] = "bench-cart-" .. lib.thread_tag .. "-" .. sent,
  }
  -- Three distinct products: a random start and two random steps that cannot meet it again.
  local a = math.random(1, products)
  local b = (a + math.random(1, products - 2)) % products + 1
  local c = b
  while c == a or c == b do
    c = math.random(1, products)
  end
  local body = string.format(
    '{"lines": [{"product_id": %d, "quantity": 1}, {"product_id": %d, "quantity": 1},'
      .. ' {"product_id": %d, "quantity": 1}], "payment_method": "card"}',
    a, b, c
  )
  return wrk.format("POST", "/api/v1/orders", headers, body)
end

done = lib.done
