-- GET /api/v1/products?q=...: a random line of the run's query file (bench/scenarios.py
-- search_queries: one word, two words, a typo in each, a word with filters).
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local lib = require("lib")
local paths = {}

function init(args)
  local opts = lib.init(args)
  for line in io.lines(opts.queries) do
    if #line > 0 then
      paths[#paths + 1] = line
    end
  end
end

function request()
  return wrk.format("GET", paths[math.random(1, #paths)])
end

done = lib.done
