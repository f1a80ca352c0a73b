-- Requests the GET paths listed in a file (one per line) in random order:
--   wrk -t2 -c32 -d10s -s bench/ocsp/random.lua http://127.0.0.1:PORT -- paths.txt
-- The requests are formatted once, in init, so that the client's work per
-- request is one table lookup.
local requests = {}

function init(args)
  for line in io.lines(args[1]) do
    requests[#requests + 1] = wrk.format("GET", line)
  end
  -- Each thread has its own Lua state: seed from a table's address.
  math.randomseed(os.time() + (tonumber(tostring({}):match("0x(%x+)") or "0", 16) or 0))
end

function request()
  return requests[math.random(#requests)]
end
