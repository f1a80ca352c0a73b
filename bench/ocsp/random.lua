-- Requests the GET paths listed in a file (one per line) in random order:
--   wrk -t2 -c32 -d10s -s bench/ocsp/random.lua http://127.0.0.1:PORT -- paths.txt
local paths = {}

function init(args)
  for line in io.lines(args[1]) do
    paths[#paths + 1] = line
  end
  -- Each thread has its own Lua state: seed from a table's address.
  math.randomseed(os.time() + (tonumber(tostring({}):match("0x(%x+)") or "0", 16) or 0))
end

function request()
  return wrk.format("GET", paths[math.random(#paths)])
end
