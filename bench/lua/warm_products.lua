-- GET /api/v1/products/{id} walking the catalogue in order from the id after `start`: fills
-- the catalogue cache before the cache-on scenarios are measured. One thread, so the walk is
-- one sequence: a pass that runs out of time is continued by the next from where it stopped.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local lib = require("lib")
local products
local next_id

function init(args)
  local opts = lib.init(args)
  products = tonumber(opts.products)
  next_id = tonumber(opts.start) % products
end

function request()
  next_id = next_id % products + 1
  return wrk.format("GET", "/api/v1/products/" .. next_id)
end

done = lib.done
