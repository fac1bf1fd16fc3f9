-- POST /api/v1/users/login as a random one of the loaded customers.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local lib = require("lib")
local users, password
local headers = { ["Content-Type"] = "application/json" }

function init(args)
  local opts = lib.init(args)
  users = tonumber(opts.users)
  password = opts.password
end

function request()
  local body = string.format(
    '{"username": "bench_user_%05d", "password": "%s"}', math.random(1, users), password
  )
  return wrk.format("POST", "/api/v1/users/login", headers, body)
end

done = lib.done
