"""Write the hostile configuration corpus: ``python tests/data/hostile/generate.py``.

Each file is a station, controller, curve or historian file with one hostile or ambiguous thing in
it, and a first line ``# expect: LINE FIELD | TEXT``: ``heatgw check`` must exit 2 with a first
message ``FILE:LINE:COL: FIELD: ...TEXT...``. Files whose first line cannot carry the header (not
UTF-8, UTF-16) are listed in ``SPECIAL`` of ``tests/gateway/test_hostile_config.py``. The files
are committed; this script documents how they were made and remakes them after a change.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
CONFIG = HERE.parents[2] / "config"

STATION = """station: {id: s1, name: Station 1}
devices:
  plc:
    protocol: modbus_tcp
    host: 127.0.0.1
    port: 502
    unit_id: 1
    timeout_s: 1.0
    tags:
      t1: {function: holding, address: 0, type: int16, scale: 0.1}
      t2: {function: holding, address: 10}
"""
CONTROLLER = (CONFIG / "controller.yaml").read_text()
CURVE = (CONFIG / "curves" / "radiators-75-50.yaml").read_text()
HISTORIAN = (CONFIG / "historian.yaml").read_text()


def laughs(top: str, indent: str = "") -> str:
    """Ten levels of nine aliases each: 9**10 values once expanded, a few hundred bytes on disk."""
    lines = [f'{indent}{top}:', f'{indent}  a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"{indent}  a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    return "\n".join(lines) + "\n"


def mapping_laughs() -> str:
    """The same with mappings and merge keys."""
    lines = ["lol:", "  m0: &m0 {a: lol, b: lol, c: lol, d: lol, e: lol, f: lol, g: lol, h: lol}"]
    lines += [f"  m{i}: &m{i} {{" + ", ".join(f"k{j}: *m{i - 1}" for j in range(9)) + "}" for i in range(1, 10)]
    return "\n".join(lines) + "\n"


def replace(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def line_of(text: str, marker: str) -> int:
    """1-based line of ``marker`` in the file as written (after the header line)."""
    for number, line in enumerate(text.splitlines(), start=2):
        if marker in line:
            return number
    raise AssertionError(marker)


# name: (text, expected line or marker, field, fragment). A str "line" is a marker to find.
CASES: dict[str, tuple[str | bytes, int | str, str, str]] = {}


def case(name: str, text: str | bytes, line: int | str, field: str, fragment: str) -> None:
    CASES[name] = (text, line, field, fragment)


T1 = "      t1: {function: holding, address: 0, type: int16, scale: 0.1}"

# --- bytes that are not a configuration --------------------------------------------------------
case("nul_in_station_name", replace(STATION, "Station 1", "Station\x001"), 2, "(document)", "U+0000 (NUL)")
case("esc_in_comment", STATION + "# \x1b[31mred\x1b[0m\n", 13, "(document)", "U+001B (ESC)")
case("del_in_host", replace(STATION, "127.0.0.1", "127.0.0.1\x7f"), 6, "(document)", "U+007F (DEL)")
case("bell_in_key", replace(STATION, "unit_id", "unit\x07_id"), 8, "(document)", "U+0007 (BEL)")
case("nul_in_curve", replace(CURVE, "author: ", "author: \x00"), "author:", "(document)", "U+0000")
case("gbk_comment", replace(STATION, "devices:\n", "devices:  # 换热站一号\n").encode("gbk"), 3, "(document)",
     "save the file as UTF-8 (it reads as GBK")
case("gbk_station_name", replace(STATION, "Station 1", "一号换热站").encode("gbk"), 2, "(document)", "reads as GBK")
case("latin1_name", replace(STATION, "Station 1", "Station é").encode("latin-1"), 2, "(document)",
     "not UTF-8 text (byte 0xe9): save the file as UTF-8")
case("gbk_in_controller", replace(CONTROLLER, "cycle_s: 60", "cycle_s: 60  # 周期").encode("gbk"), "cycle_s: 60",
     "(document)", "reads as GBK")

# --- aliases, nesting, tags -------------------------------------------------------------------
case("billion_laughs_station", STATION + laughs("lol"), 19, "(document)", "expands to more than 100000 values")
case("billion_laughs_curve", replace(CURVE, "curve:\n", laughs("lol") + "curve:\n"), 11, "(document)",
     "billion laughs")
case("billion_laughs_controller", laughs("lol") + CONTROLLER, 8, "(document)", "billion laughs")
case("billion_laughs_historian", laughs("lol") + HISTORIAN, 8, "(document)", "billion laughs")
case("billion_laughs_mappings", STATION + mapping_laughs(), 18, "(document)", "expands to more than")
case("recursive_alias_list", STATION + "loop: &x [1, *x]\n", 13, "(document)", "alias *x refers to a node that contains it")
case("recursive_alias_mapping", STATION + "loop: &x\n  again: *x\n", 14, "(document)", "recursive alias")
case("recursive_merge", STATION + "loop: &x\n  <<: *x\n", 14, "(document)", "recursive alias")
case("deep_flow_nesting", STATION + "deep: " + "[" * 5000 + "]" * 5000 + "\n", 13, "(document)",
     "nested more than 64 levels deep")
case("deep_block_nesting", STATION + "deep:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(80)) + "  " * 81
     + "x: 1\n", 76, "(document)", "nested more than 64 levels deep")
case("deep_through_aliases", STATION + "a: &a " + "[" * 40 + "1" + "]" * 40 + "\nb: " + "[" * 30 + "*a" + "]" * 30
     + "\n", 14, "(document)", "nested more than 64 levels deep")
case("undefined_alias", replace(STATION, "port: 502", "port: *nowhere"), 7, "YAML syntax", "found undefined alias")
case("python_object_tag", replace(STATION, "host: 127.0.0.1", "host: !!python/object/apply:os.system [ls]"), 6,
     "devices.plc.host", "unsupported tag")
case("explicit_timestamp_tag", replace(CURVE, "date: 2026-10-20", "date: !!timestamp 2026-13-45"), "date:",
     "curve.date", "unsupported tag")
case("complex_key", STATION + "? [a, b]\n: 1\n", 13, "(document)", "a mapping key must be a plain value")
case("huge_integer", replace(STATION, "port: 502", "port: " + "9" * 5000), 7, "devices.plc.port", "is not a valid int")
case("merge_of_a_number", replace(STATION, "    port: 502\n", "    <<: 5\n    port: 502\n"), 7, "devices.plc",
     "a merge key (<<) takes a mapping")
case("two_documents", STATION + "---\n" + STATION, 13, "YAML syntax", "expected a single document")
case("tab_indentation", replace(STATION, "    host: 127.0.0.1", "\thost: 127.0.0.1"), 6, "YAML syntax", "")

# --- YAML 1.1 forms that other readers turn into something else -------------------------------
case("octal_address", replace(STATION, "address: 10}", "address: 0100}"), 12, "devices.plc.tags.t2.address",
     "0100 is an octal number in YAML 1.1")
case("sexagesimal_port", replace(STATION, "port: 502", "port: 5:02"), 7, "devices.plc.port", "base-60")
case("yes_port", replace(STATION, "port: 502", "port: yes"), 7, "devices.plc.port", "'yes' is a boolean in YAML 1.1")
case("on_timeout", replace(STATION, "timeout_s: 1.0", "timeout_s: on"), 9, "devices.plc.timeout_s", "boolean")
case("underscore_address", replace(STATION, "address: 10}", "address: 1_000}"), 12, "devices.plc.tags.t2.address",
     "with '_'")
case("octal_no_value", replace(STATION, "address: 10}", "address: 10, no_value: 0777}"), 12,
     "devices.plc.tags.t2.no_value", "octal")
case("true_unit_id", replace(STATION, "unit_id: 1", "unit_id: true"), 8, "devices.plc.unit_id",
     "expected a number, not true or false")
case("true_scale", replace(STATION, "scale: 0.1}", "scale: true}"), 11, "devices.plc.tags.t1.scale", "not true or false")
case("day_end_unquoted", replace(CONTROLLER, 'day_end: "21:00"', "day_end: 21:00"), "day_end:",
     "controller.circuits.radiators.comfort.day_end", "21:00 is a base-60 number in YAML 1.1")
case("day_start_short_unquoted", replace(CONTROLLER, 'day_start: "06:00"', "day_start: 7:30"), "day_start:",
     "controller.circuits.radiators.comfort.day_start", "base-60")
case("day_start_seconds", replace(CONTROLLER, 'day_start: "06:00"', "day_start: 450"), "day_start:",
     "controller.circuits.radiators.comfort.day_start", "expected a time, not a number")
case("enabled_yes", replace(CONTROLLER, "enabled: true ", "enabled: yes  "), "enabled: yes", "controller.enabled",
     "boolean in YAML 1.1")
case("enabled_one", replace(CONTROLLER, "enabled: true ", "enabled: 1    "), "enabled: 1", "controller.enabled",
     "expected true or false")
case("curve_version_off", replace(CURVE, "version: 1", "version: off"), "version:", "curve.version", "boolean")
case("curve_date_impossible", replace(CURVE, "date: 2026-10-20", "date: 2026-13-45"), "date:", "curve.date",
     "month value is outside expected range")
case("curve_date_february_30", replace(CURVE, "date: 2026-10-20", "date: 2026-02-30"), "date:", "curve.date",
     "day value is outside expected range")
case("curve_date_number", replace(CURVE, "date: 2026-10-20", "date: 20261020"), "date:", "curve.date",
     "expected a date, not a number")
case("historian_port_sexagesimal", replace(HISTORIAN, "port: 1883", "port: 18:03"), "port:", "mqtt.port", "base-60")

# --- NaN and infinity -------------------------------------------------------------------------
case("scale_nan", replace(STATION, "scale: 0.1}", "scale: .nan}"), 11, "devices.plc.tags.t1.scale",
     "Input should be a finite number")
case("offset_minus_inf", replace(STATION, "scale: 0.1}", "scale: 0.1, offset: -.inf}"), 11,
     "devices.plc.tags.t1.offset", "finite number")
case("writable_min_nan", replace(STATION, "scale: 0.1}", "scale: 0.1, writable: {min: .nan, max: 90}}"), 11,
     "devices.plc.tags.t1.writable.min", "finite number")
case("range_nan", replace(STATION, "scale: 0.1}", "scale: 0.1, range: [.nan, .nan]}"), 11,
     "devices.plc.tags.t1.range[0]", "finite number")
case("deadband_inf", replace(STATION, "scale: 0.1}", "scale: 0.1, deadband: .inf}"), 11,
     "devices.plc.tags.t1.deadband", "finite number")
case("exponent_overflow_to_inf", replace(STATION, "scale: 0.1}", "scale: 1e400}"), 11, "devices.plc.tags.t1.scale",
     "finite number")
case("writable_limits_1e308", replace(STATION, "address: 10}", "address: 10, type: float64, "
                                                             "writable: {min: -1e308, max: 1e308}}"),
     12, "devices.plc.tags.t2.writable", "max - min must be a finite number")
case("interval_nan", replace(STATION, "devices:\n", "groups:\n  default: {interval_s: .nan}\ndevices:\n"), 4,
     "groups.default.interval_s", "finite number")
case("backoff_jitter_nan", replace(STATION, "    timeout_s: 1.0\n", "    timeout_s: 1.0\n    backoff: {jitter: .nan}\n"),
     10, "devices.plc.backoff.jitter", "finite number")
case("limit_line_nan", replace(CONTROLLER, "{outdoor_c: -7.6, value: 60}", "{outdoor_c: -7.6, value: .nan}"),
     "value: .nan", "controller.circuits.radiators.return_limit.line[1].value", "finite number")
case("limit_line_outdoor_inf", replace(CONTROLLER, "line: [{outdoor_c: 0, value: 2300}]",
                                       "line: [{outdoor_c: .inf, value: 2300}]"), "outdoor_c: .inf",
     "controller.circuits.radiators.power_limit.line[0].outdoor_c", "finite number")
case("power_limit_value_inf", replace(CONTROLLER, "line: [{outdoor_c: 0, value: 2300}]",
                                      "line: [{outdoor_c: 0, value: .inf}]"), "value: .inf",
     "controller.circuits.radiators.power_limit.line[0].value", "finite number")
case("outdoor_range_nan", replace(CONTROLLER, "range_c: [-45, 45]", "range_c: [.nan, 45]"), "range_c:",
     "controller.outdoor.range_c[0]", "finite number")
case("curve_exponent_nan", replace(CURVE, "exponent: 1.3", "exponent: .nan"), "exponent:",
     "curve.physical.exponent", "finite number")
case("curve_design_supply_inf", replace(CURVE, "design_supply_c: 75", "design_supply_c: .inf"), "design_supply_c",
     "curve.physical.design_supply_c", "finite number")
case("historian_metrics_nan", replace(HISTORIAN, "metrics_interval_s: 10", "metrics_interval_s: .nan"),
     "metrics_interval_s", "metrics_interval_s", "finite number")

# --- writable limits the register cannot hold, registers written twice -------------------------
case("writable_beyond_int16_scaled", replace(STATION, "scale: 0.1}", "scale: 0.1, writable: {min: 3300, max: 3630}}"),
     11, "devices.plc.tags.t1.writable", "do not fit the register: int16 with scale 0.1 and offset 0 holds -3276.8")
case("writable_negative_on_uint16", replace(STATION, "address: 10}", "address: 10, writable: {min: -1, max: 10}}"),
     12, "devices.plc.tags.t2.writable", "do not fit the register: uint16")
case("writable_beyond_bcd16", replace(STATION, "address: 10}", "address: 10, type: bcd16, "
                                                             "writable: {min: 0, max: 10000}}"),
     12, "devices.plc.tags.t2.writable", "bcd16")
case("writable_below_offset", replace(STATION, "address: 10}", "address: 10, type: uint32, offset: 100, "
                                                             "writable: {min: 0, max: 500}}"),
     12, "devices.plc.tags.t2.writable", "holds 100 to")
case("writable_same_register", STATION.replace(
    T1, "      t1: {function: holding, address: 0, type: int16, scale: 0.1, writable: {min: 30, max: 90}}").replace(
    "address: 10}", "address: 0, writable: {min: 0, max: 65535}}"),
    12, "devices.plc.tags.t2.address", "holding 0 is already written by tag 't1'")
case("writable_inside_float32", STATION.replace(
    T1, "      t1: {function: holding, address: 9, type: float32, writable: {min: 30, max: 90}}").replace(
    "address: 10}", "address: 10, writable: {min: 0, max: 65535}}"),
    12, "devices.plc.tags.t2.address", "holding 10 is already written by tag 't1'")
case("writable_bit_and_register", STATION.replace(
    T1, "      t1: {function: holding, address: 10, type: bool, bit: 3, writable: {min: 0, max: 1}}").replace(
    "address: 10}", "address: 10, writable: {min: 0, max: 100}}"),
    12, "devices.plc.tags.t2.address", "already written by tag 't1'")
case("writable_same_coil", replace(STATION, "      t2: {function: holding, address: 10}\n",
                                   "      c1: {function: coil, address: 4, writable: {min: 0, max: 1}}\n"
                                   "      c2: {function: coil, address: 4, writable: {min: 0, max: 1}}\n"),
     13, "devices.plc.tags.c2.address", "coil 4 is already written by tag 'c1'")
case("writable_same_register_two_devices", STATION.replace(
    T1, "      t1: {function: holding, address: 0, type: int16, scale: 0.1, writable: {min: 30, max: 90}}")
    + "  plc_again:\n    protocol: modbus_tcp\n    host: 127.0.0.1\n    port: 502\n    tags:\n"
      "      sp_raw: {function: holding, address: 0, writable: {min: 0, max: 65535}}\n",
    18, "devices.plc_again.tags.sp_raw.address", "already written by tag 't1'")

# --- files named by a file ---------------------------------------------------------------------
case("controller_curve_is_dev_zero", replace(CONTROLLER, "curve: curves/radiators-75-50.yaml", "curve: /dev/zero"),
     "curve: /dev/zero", "controller.circuits.radiators.curve", "/dev/zero:1:1: (document): not a regular file")
case("controller_curve_is_a_directory", replace(CONTROLLER, "curve: curves/radiators-75-50.yaml", "curve: /tmp"),
     "curve: /tmp", "controller.circuits.radiators.curve", "it is a directory")

SPECIAL: dict[str, bytes] = {
    "utf16_station.yaml": STATION.encode("utf-16"),
    "binary_png.yaml": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10" + bytes(range(256)),
}


def main() -> None:
    for old in HERE.glob("*.yaml"):
        if not old.is_symlink():
            old.unlink()
    for name, (text, line, field, fragment) in CASES.items():
        body = text if isinstance(text, bytes) else text.encode()
        if isinstance(line, str):
            shown = body.decode("utf-8", "replace")
            line = line_of(shown, line)
        header = f"# expect: {line} {field} | {fragment}\n".encode()
        (HERE / f"{name}.yaml").write_bytes(header + body)
    for name, body in SPECIAL.items():
        (HERE / name).write_bytes(body)


if __name__ == "__main__":
    main()
