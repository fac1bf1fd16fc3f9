-- A catalogue page of 20: half the time of the whole catalogue (one of its first 50 pages),
-- half the time of one category (one of its first 10 pages).
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local lib = require("lib")
local categories

function init(args)
  local opts = lib.init(args)
  categories = tonumber(opts.categories)
end

function request()
  if math.random() < 0.5 then
    return wrk.format("GET", "/api/v1/products?limit=20&offset=" .. 20 * math.random(0, 49))
  end
  local category = string.format("category-%02d", math.random(1, categories))
  return wrk.format(
    "GET",
    "/api/v1/products?limit=20&category=" .. category .. "&offset=" .. 20 * math.random(0, 9)
  )
end

done = lib.done
