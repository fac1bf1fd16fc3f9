-- POST /api/v1/orders as a random logged-in customer, with a fresh Idempotency-Key each time
-- (as a real client sends). Tokens come one per line from a file. Options:
--   products  the catalogue's size: each order is for a random product of it;
--   product   always this one instead (a flash sale);
--   lines     a cart of this many distinct random products, one of each, as one order
--             (issue 28); without it, the seed's one-product body.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local lib = require("lib")
local products
local product
local lines
local tokens = {}
local sent = 0

function init(args)
  local opts = lib.init(args)
  products = tonumber(opts.products)
  product = tonumber(opts.product)
  lines = tonumber(opts.lines)
  for line in io.lines(opts.tokens) do
    if #line > 0 then
      tokens[#tokens + 1] = line
    end
  end
end

-- `count` distinct random product ids (a few draws again when two meet).
local function distinct(count)
  local chosen, seen = {}, {}
  while #chosen < count do
    local id = math.random(1, products)
    if not seen[id] then
      seen[id] = true
      chosen[#chosen + 1] = string.format('{"product_id": %d, "quantity": 1}', id)
    end
  end
  return chosen
end

function request()
  sent = sent + 1
  local headers = {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. tokens[math.random(1, #tokens)],
    ["Idempotency-Key"] = "bench-" .. lib.thread_tag .. "-" .. sent,
  }
  local body
  if lines then
    body = '{"lines": [' .. table.concat(distinct(lines), ", ") .. '], "payment_method": "card"}'
  else
    body = string.format(
      '{"product_id": %d, "quantity": 1, "payment_method": "card"}',
      product or math.random(1, products)
    )
  end
  return wrk.format("POST", "/api/v1/orders", headers, body)
end

done = lib.done
