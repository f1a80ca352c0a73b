-- POSTs one DER OCSP request, read from the file named by $BODY:
--   BODY=request.der wrk -t2 -c32 -d8s -s bench/ocsp/post.lua http://127.0.0.1:PORT/ocsp
-- The request is built once per thread (wrk's static request), so the
-- client does no Lua work per request.
local path = os.getenv("BODY")
if not path then
  error("BODY must name the DER request file")
end
local f = assert(io.open(path, "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/ocsp-request"
