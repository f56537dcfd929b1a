"""The HTTP routes, one module per caller: `agent` (and the health check), `owner`, `web` (the
owner's page). Each declares its routes in a `RouteTable` (routes/table.py), which `create_app`
adds in that order; a route authenticates (api/auth.py), calls one service function and shapes
the answer."""
