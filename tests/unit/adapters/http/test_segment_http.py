"""``GET /v1/segments``: what polling apps read, with ETags, and the SDK's poller over it."""

from __future__ import annotations

from aiohttp import web

from controller.adapters.http.segment_routes import SegmentRoutes
from controller.sdk.segment_poller import SegmentPoller
from tests.support.app_client import app_client
from tests.unit.adapters.stores.test_segment_service import IDS, World


def _app(world: World) -> web.Application:
    reads = world.service.reads()
    app = web.Application()
    routes = SegmentRoutes(
        listing=reads.listing, version=reads.version, whole=reads.whole, key_id="controller"
    )
    routes.add_to(app.router)
    return app


async def test_segments_are_listed_and_served_with_etags() -> None:
    world = World()
    await world.send(world.commands("put", ids=IDS))
    async with app_client(_app(world)) as client:
        listed = await client.get("/v1/segments")
        assert listed.json() == {
            "segments": [{"name": "beta", "version": 1, "kind": "ids", "count": len(IDS)}]
        }
        again = await client.get("/v1/segments", headers={"If-None-Match": listed.headers["ETag"]})
        assert again.status_code == 304
        one = await client.get("/v1/segments/beta")
        body = one.json()
        assert (body["version"], body["key_id"], len(body["part_data"])) == (
            1,
            "controller",
            body["parts"],
        )
        etag = one.headers["ETag"]
        assert (
            await client.get("/v1/segments/beta", headers={"If-None-Match": etag})
        ).status_code == 304
        assert (await client.get("/v1/segments/gamma")).status_code == 404
        assert (await client.get("/v1/segments/bad%20name")).status_code == 400


async def test_the_poller_follows_puts_and_deletes() -> None:
    world = World()
    await world.send(world.commands("put", ids=IDS))
    async with app_client(_app(world)) as client:
        poller = SegmentPoller(str(client.base_url), keys={"controller": world.controller_public})
        try:
            assert await poller.poll()
            assert (poller.version("beta"), poller.member("beta", IDS[7])) == (1, True)
            assert poller.member("beta", "stranger") is False
            await world.send(world.commands("put", rule='plan == "pro"'))
            assert await poller.poll()
            assert (poller.version("beta"), poller.matches("beta", {"plan": "pro"})) == (2, True)
            await world.send(world.commands("delete"))
            assert await poller.poll()
            assert (poller.version("beta"), poller.member("beta", IDS[7])) == (None, None)
            assert (poller.rejected, poller.invalid) == (0, 0)
        finally:
            await poller.stop()
