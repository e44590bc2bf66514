# ruff: noqa: E501  (test data: one mutation per line reads better than wrapped strings)
"""Generated bad policy inputs: malformed YAML, unknown names, type errors, injection attempts.

Each case is (case id, policy text, marker): the text is the example policy with one
mutation; when `marker` is set, the reported line must contain it.
"""

from __future__ import annotations

import json

from tests.unit.policy_engine.support import EXAMPLE

BASE = EXAMPLE.read_text()
FILTER = "\"region = user_attr('region')\""
Case = tuple[str, str, str | None]


def mutate(old: str, new: str) -> str:
    assert BASE.count(old) >= 1, old
    return BASE.replace(old, new, 1)


BAD_FILTERS = [
    # unknown names and functions
    "regionx = 'North'", "other.region = 'North'", "sales.vendas.region = 'North'", "sleep(1) = 1",
    "reflect('java.lang.Runtime', 'exec', 'id') = 1", "java_method('a', 'b') = 'c'", "raise_error('x') IS NULL",
    "assert_true(1 = 1) IS NULL", "input_file_name() = 'x'", "current_user() = 'x'", "rand() > 0.5",
    "uuid() = 'x'", "md5(region) = 'x'", "regexp_extract(region, 'a', 0) = 'a'", "hex(price) = 'x'",
    "count(*) > 0", "sum(price) > 0", "row_number() OVER () = 1", "from_json(region, 'a int') IS NULL",
    "user_attr('nope') = 'x'", "user_attr(region) = 'x'", "user_attr('region', 'x') = 'y'",
    "user_name('x') = 'y'", "user_in_group('nogroup')", "user_attr('reg' || 'ion') = 'x'",
    "region RLIKE '.*'", "region = x'00'",
    # type errors
    "region = 1", "price = 'abc'", "region", "price", "year + region > 1", "region > 5", "NOT price",
    "price AND year", "sale_ts = 'not-a-date'", "year = TRUE", "length(price) > 1", "lower(price) = 'x'",
    "year(region) = 2020", "region LIKE price", "region LIKE 1", "price BETWEEN 'a' AND 'b'",
    "region IN (1, 2)", "CASE WHEN region THEN 1 END = 1", "price / 0 > 1", "price / year > 1",
    "price % 0 = 1", "CAST(region AS INT) = 1", "CAST('x' AS DATE) = sale_ts", "coalesce(region, 1) = 'x'",
    "concat(region, price) = 'x'", "-region = 1", "substring(region, 'a') = 'x'", "if(region, 1, 2) = 1",
    "abs(region) = 1", "round(price, 'x') = 1", "region = user_in_group('admins')", "CASE region WHEN 'a' THEN TRUE END",
    # injection attempts and statements
    "1=1; DROP TABLE sales.vendas", "region = 'North' -- '", "region = 'North' /* x */",
    "region = 'North') OR (1=1", "region = 'North", "'", ")", "region = ${user.region}", "region = :region",
    "region = ?", "region IN (SELECT region FROM sales.vendas)", "EXISTS (SELECT 1 FROM sales.vendas)",
    "(SELECT 1) = 1", "region = (SELECT max(region) FROM sales.vendas)", "SELECT 1", "DROP TABLE x",
    "INSERT INTO x VALUES (1)", "region = 'a' UNION SELECT 1", "region[0] = 'x'", "*", "region = 'N' OR",
    "region == ", "region = 'North' ;", "1 = 1 --", "region LIKE 'a' ESCAPE '!'", " ",
    "region = 'x' OR user_attr('region') = 'y' /* */", "lake.sales.vendas.region = 'x'",
    "region IN (SELECT region FROM parquet.`/etc/passwd`)", "region = (region = 'x')",
]

BAD_MASKS = [
    "redactt", "custom", "\"CASE WHEN 1=1 THEN price END\"", "\"redact; DROP TABLE x\"", "{show_last: 0}",
    "{show_last: 65}", "{show_last: \"4\"}", "{show_last: -1}", "{show_last: 4.5}", "{bucket: 0}", "{bucket: -5}",
    "{bucket: 1.5}", "{bucket: \"1e3\"}", "{bucket: \"100) OR (1\"}", "{hash: k9}", "{hash: \"K1'\"}",
    "{show_first: 4, show_last: 4}", "{}", "[redact]", "123", "true", "{sql: \"price * 0\"}", "{year_only: true}",
    "{show_last: 4}", "redact", "year_only", "{show_first: 2}", "hash",
]

BAD_ATTRIBUTES = [
    ("ana:   {groups: [analysts], attributes: {region: North}}",
     [
         "ana:   {groups: [analysts], attributes: {\"region'\": North}}",
         "ana:   {groups: [analysts], attributes: {Region: North}}",
         "ana:   {groups: [analysts], attributes: {tier: gold}}",
         "ana:   {groups: [analysts], attributes: {region: \"North\\\\' OR 1=1 --\"}}",
         "ana:   {groups: [analysts], attributes: {region: \"North\\u0000\"}}",
         "ana:   {groups: [analysts], attributes: {region: \"North\\n OR 1=1\"}}",
         "ana:   {groups: [analysts], attributes: {region: \"North\\t\"}}",
         "ana:   {groups: [analysts], attributes: {region: 5}}",
         "ana:   {groups: [analysts], attributes: {region: [North]}}",
         "ana:   {groups: [analysts], attributes: {region: {a: b}}}",
         "ana:   {groups: [analysts], attributes: {region: null}}",
         "ana:   {groups: [analysts], attributes: {region: true}}",
         "ana:   {groups: [analysts], attributes: {region: " + "N" * 300 + "}}",
         "ana:   {groups: [analysts], attributes: [region]}",
         "ana:   {groups: [analysts], attributes: {region: North}, role: admin}",
         "ana:   {groups: [analyst], attributes: {region: North}}",
         "ana:   {groups: \"analysts; DROP\", attributes: {region: North}}",
         "Ana:   {groups: [analysts], attributes: {region: North}}",
         "\"ana'; --\": {groups: [analysts], attributes: {region: North}}",
         "\"ana bob\": {groups: [analysts], attributes: {region: North}}",
         "1ana:  {groups: [analysts], attributes: {region: North}}",
         "ana-b: {groups: [analysts], attributes: {region: North}}",
         "ana:   [analysts]",
     ]),
    ("    region: string", ["    region: sql", "    region: map", "    \"region'\": string", "    region: [string]"]),
    ("  groups: [analysts, admins, auditors]", ["  groups: [analysts, \"admins'\", auditors]",
                                                "  groups: [analysts, Admins, auditors]",
                                                "  groups: [analysts, analysts, admins, auditors]",
                                                "  groups: {analysts: 1}"]),
]

BAD_TO = ["{users: [ghost]}", "{groups: [ghosts]}", "everybody", "{}", "{roles: [x]}", "[analysts]",
          "{groups: analysts; drop}", "{users: [\"ana' OR '1'='1\"]}", "null", "{groups: [[analysts]]}"]


def filter_cases() -> list[Case]:
    return [(f"filter-{i}", mutate(FILTER, json.dumps(f)), "filter:") for i, f in enumerate(BAD_FILTERS)]


def mask_cases() -> list[Case]:
    out: list[Case] = []
    for i, m in enumerate(BAD_MASKS):
        out.append((f"mask-price-{i}", mutate("        mask: {bucket: 100}", f"        mask: {m}"), "mask:"))
    for i, m in enumerate(BAD_MASKS[:-6]):
        out.append((f"mask-default-{i}", mutate("pii:       {default_mask: redact,", f"pii: {{default_mask: {m},"),
                    "pii:"))
    out.append(("mask-email-bucket", mutate("        mask: {hash: k1}", "        mask: {bucket: 10}"), "mask:"))
    out.append(("mask-email-year", mutate("        mask: {hash: k1}", "        mask: year_only"), "mask:"))
    out.append(("mask-ts-show", mutate("        columns: [customer_email]\n        mask: {hash: k1}",
                                       "        columns: [sale_ts]\n        mask: {show_first: 3}"), "mask:"))
    out.append(("mask-no-keys", mutate("keys:\n  k1: {env: ICETIDE_POLICY_KEY_K1}", "keys: {}"), "mask:"))
    return out


def attribute_cases() -> list[Case]:
    out: list[Case] = []
    for old, news in BAD_ATTRIBUTES:
        for i, new in enumerate(news):
            out.append((f"principal-{len(out)}-{i}", mutate(old, new), None))
    for i, to in enumerate(BAD_TO):
        out.append((f"to-{i}", mutate("        to: {groups: [analysts]}\n        filter:",
                                      f"        to: {to}\n        filter:"), None))
    return out


STRUCTURE = [
    ("policy: sales-access\n", ""), ("version: 1\n", ""), ("version: 1\n", "version: -1\n"),
    ("version: 1\n", "version: \"1\"\n"), ("version: 1\n", "version: 1.5\n"), ("policy: sales-access", "policy: \"bad id!\""),
    ("tables:\n  sales.vendas:", "tables:\n  vendas:"), ("tables:\n  sales.vendas:", "tables:\n  Sales.Vendas:"),
    ("tables:\n  sales.vendas:", "tables:\n  sales.vendas.x:"), ("tables:\n  sales.vendas:", "tables:\n  \"sales.vendas; drop\":"),
    ("tables:\n  sales.vendas:", "tables:\n  sales.nope:"), ("tables:\n  sales.vendas:", "tables:\n  other.vendas:"),
    ("    columns:\n", "    colums:\n"), ("      sale_id: [public]", "      Sale_ID: [public]"),
    ("      sale_id: [public]", "      sale_idx: [public]"), ("      sale_id: [public]", "      \"sale_id;\": [public]"),
    ("      sale_id: [public]", "      sale_id: [secret]"), ("      sale_id: [public]", "      sale_id: {a: 1}"),
    ("    row_filters:\n", "    row_filters: {}\n    xrow_filters:\n"), ("      - id: rf-analyst-region\n", "      - idx: rf-analyst-region\n"),
    ("      - id: rf-admin-all\n        to: {groups: [admins]}", "      - id: rf-admin-all"),
    ("      - id: rf-admin-all\n", "      - id: rf-analyst-region\n"), ("      - id: rf-admin-all\n", "      - id: \"rf admin\"\n"),
    ("      - id: rf-admin-all\n", "      - id: rf-admin-all\n        effect: maybe\n"),
    ("      - id: rf-admin-all\n", "      - id: rf-admin-all\n        priority: 1\n"),
    ("        columns: [price]\n", ""), ("        columns: [price]\n", "        columns: [pricex]\n"),
    ("        columns: [price]\n", "        columns: [price, price]\n"), ("        tags: [pii, financial]", "        tags: [pii, money]"),
    ("        mask: {bucket: 100}\n", ""), ("      - id: m-price-analysts\n", "      - id: m-price-analysts\n        where: x\n"),
    ("  k1: {env: ICETIDE_POLICY_KEY_K1}", "  k1: {env: \"bad env\"}"), ("  k1: {env: ICETIDE_POLICY_KEY_K1}", "  k1: {env: A, file: b}"),
    ("  k1: {env: ICETIDE_POLICY_KEY_K1}", "  k1: {}"), ("  k1: {env: ICETIDE_POLICY_KEY_K1}", "  K1: {env: A}"),
    ("  public:    {default_mask: none,", "  public:    {"), ("description: Row filters", "owner: x\ndescription: Row filters"),
    ("principals:\n", "principals:\n  roles: [x]\n"), ("  users:\n    ana:", "  users: [ana]\n  xusers:\n    ana:"),
    ("      - id: rf-auditor-recent\n", "      - id: rf-auditor-recent\n        lookup_tables: [\"bad name\"]\n"),
    ("      - id: rf-auditor-recent\n", "      - id: rf-auditor-recent\n        lookup_tables: [sales.ghost]\n"),
    ("        filter: \"year >= 2024\"", "        filter: 2024"), ("        filter: \"year >= 2024\"", "        filter: [year]"),
    ("        filter: \"year >= 2024\"", "        filter: \"" + "year >= 2024 AND " * 300 + "TRUE\""),
    ("description: Row filters by region, masks for price and e-mail.", "description: [x]"),
    ("tables:\n  sales.vendas:\n", "tables:\n  sales.vendas: [x]\n  other.t:\n"),
    ("    masks:\n", "    masks: {}\n    xmasks:\n"), ("    masks:\n", "    masks:\n      - 1\n"),
]

MALFORMED = [
    "policy: [unclosed", "policy: x\n  version: 1\n bad: indent", "policy: x\n\tversion: 1", "a: 1\na: 2",
    "a: &x 1\nb: *x", "a: !!python/object/apply:os.system [id]", "a: !!binary aGVsbG8=", "a: !!set {x}",
    "policy: p\nversion: 2020-01-01\n", "a: 1\n---\nb: 2", "", "just a string", "- a\n- b", "a: \"unclosed",
    "a: \"bad \\q escape\"", "a: b: c", "a: *unknown", "? [complex, key]\n: 1", "a: " + "[" * 60 + "]" * 60,
    "<<: {a: 1}\npolicy: p", "a: !custom 1", "a:\n  - b\n  c: d", "{a: 1", "a: 'x'y'", "%YAML 9.9\n---\na: 1",
    "a: 1\n\x00", "policy: p\nversion: 1\nprincipals: {users: {}}\ntables: {}\n...\nmore: 1",
]


# a list, mapping or quoted string left open: reported on the line of its opening mark (test_yaml_openings.py)
LEFT_OPEN = [
    ("  groups: [analysts, admins, auditors]", "  groups: [analysts, admins, auditors", "groups:"),
    ("    ana:   {groups: [analysts], attributes: {region: North}}", "    ana:   {groups: [analysts, attributes: {region: North}}", "ana:"),
    ("  k1: {env: ICETIDE_POLICY_KEY_K1}", "  k1: {env: ICETIDE_POLICY_KEY_K1", "k1:"),
    ("  financial: {default_mask: \"null\", description: amounts}", "  financial: {default_mask: \"null, description: amounts}", "financial:"),
    ("        filter: \"region = user_attr('region')\"", "        filter: \"region = user_attr('region')", "user_attr"),
    ("        filter: \"year >= 2024\"", "        filter: 'year >= 2024", "year >= 2024"),
]


def left_open_cases() -> list[Case]:
    return [(f"left-open-{i}", mutate(old, new), marker) for i, (old, new, marker) in enumerate(LEFT_OPEN)]


def structure_cases() -> list[Case]:
    return [(f"structure-{i}", mutate(old, new), None) for i, (old, new) in enumerate(STRUCTURE)]


def malformed_cases() -> list[Case]:
    return [(f"yaml-{i}", text, None) for i, text in enumerate(MALFORMED)]


def all_cases() -> list[Case]:
    return [*filter_cases(), *mask_cases(), *attribute_cases(), *structure_cases(), *malformed_cases(),
            *left_open_cases()]

STRUCTURE.append(("tables:\n  sales.vendas:", "tables:\n  sec_ana.vendas:"))
