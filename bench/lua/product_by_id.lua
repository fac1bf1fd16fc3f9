-- GET /api/v1/products/{id} for a random id of the loaded catalogue.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local lib = require("lib")
local products

function init(args)
  local opts = lib.init(args)
  products = tonumber(opts.products)
end

function request()
  return wrk.format("GET", "/api/v1/products/" .. math.random(1, products))
end

done = lib.done
