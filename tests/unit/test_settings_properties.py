"""Whatever an operator puts in the settings, loading them gives Settings or a ConfigError.

A traceback at start-up tells an operator nothing about which variable is wrong; a
ConfigError names it. So for arbitrary text in arbitrary known variables (also a secret's
``_FILE`` variant and ``PEPPOL_MIGRATE_CONFIG``, which point at files with arbitrary bytes),
``load_settings`` may only succeed or raise ConfigError, and the error must print.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migration_engine.errors import ConfigError
from migration_engine.settings import CONFIG_ENV, Settings, env_names, load_settings

NAMES = sorted(env_names())
FILE_NAMES = [name for name in NAMES if name.endswith("_FILE") or name == CONFIG_ENV]
VALUE_NAMES = [name for name in NAMES if name not in FILE_NAMES]

# Values shaped like what the settings take (numbers, booleans, URLs, lists) as well as any text,
# so the checks behind the type coercion are reached too, not only "not a number".
SHAPED = st.one_of(
    st.from_regex(r"\A-?[0-9]{0,6}(\.[0-9]{0,4})?([eE][+-]?[0-9]{1,5})?\Z"),
    st.sampled_from(
        [
            "true",
            "false",
            "yes",
            "0",
            "1",
            "nan",
            "inf",
            "-inf",
            "1e309",
            "",
            " ",
            "acceptance",
            "production",
            "outbox",
            "http",
            "https://",
            "sqlite:///",
            "sqlite:///:memory:",
            "a,b",
            "[]",
        ]
    ),
    st.from_regex(r"\A(https?|sqlite|postgresql)://[^\s]{0,30}\Z"),
    st.text(max_size=40),
    st.text(st.characters(codec="utf-8"), max_size=40),
    st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=3),  # os.environ's surrogateescape
)
UTF8_CONTENT = st.text(max_size=200).map(lambda t: t.encode("utf-8", "replace"))
NOT_UTF8_CONTENT = st.binary(min_size=1, max_size=200).filter(lambda b: not _is_utf8(b))



def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def load_or_config_error(values: dict[str, str], files: dict[str, bytes | None]) -> None:
    """Files are written to a fresh folder (``None``: a path that does not exist), then loaded."""
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(values)
        for i, (name, content) in enumerate(files.items()):
            path = Path(tmp) / f"value-{i}.toml"
            if content is not None:
                path.write_bytes(content)
            env[name] = str(path)
        try:
            loaded = load_settings(env=env, cwd=Path(tmp))
        except ConfigError as exc:
            assert str(exc)  # names the setting; the CLI prints it as is
            return
    assert isinstance(loaded, Settings)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.dictionaries(st.sampled_from(VALUE_NAMES), SHAPED, max_size=6),
    files=st.dictionaries(st.sampled_from(FILE_NAMES), st.one_of(UTF8_CONTENT, st.none()), max_size=2),
)
def test_any_settings_load_or_raise_config_error(values: dict[str, str], files: dict[str, bytes | None]) -> None:
    load_or_config_error(values, files)


@settings(max_examples=50, deadline=None, report_multiple_bugs=False)
@given(name=st.sampled_from(FILE_NAMES), content=NOT_UTF8_CONTENT)
def test_a_settings_file_that_is_not_utf8_is_a_config_error(name: str, content: bytes) -> None:
    load_or_config_error({}, {name: content})
