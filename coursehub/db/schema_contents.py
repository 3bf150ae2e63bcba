"""Emptying the store's schema while keeping the schema: `db reset` and `db restore`."""

from __future__ import annotations


def sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# The classes of the objects a schema holds that `drop_schema_contents` drops: relations,
# types, routines, operators and the like. Others that depend on the schema are properties
# of the schema itself, and stay: its default privileges, extensions installed in it.
_SCHEMA_OBJECT_CLASSES = ", ".join(
    f"'{name}'::regclass"
    for name in (
        "pg_class",
        "pg_type",
        "pg_proc",
        "pg_operator",
        "pg_opclass",
        "pg_opfamily",
        "pg_collation",
        "pg_conversion",
        "pg_statistic_ext",
        "pg_ts_config",
        "pg_ts_dict",
        "pg_ts_parser",
        "pg_ts_template",
    )
)


def drop_schema_contents(schema: str) -> str:
    """A `DO` block that drops everything in `schema` and keeps the schema (created if
    missing), so its owner, grants, comment and default privileges stay as they were:
    dropping and re-creating it would make the running role its owner with no grants
    (PostgreSQL 15's `public` belongs to pg_database_owner, with USAGE for everyone).

    Its objects are dropped one at a time, each with CASCADE, looking again after each
    drop for what is left, until nothing is: no object kind to list, no order to get right
    (a partitioned table, a view on a table, a type a table uses). Objects that belong to
    an extension are left to the extension, and parts of another object (a range's
    multirange type) go with it."""
    return f"""DO $coursehub$
DECLARE target oid; statement text;
BEGIN
  SELECT oid INTO target FROM pg_namespace WHERE nspname = {sql_literal(schema)};
  IF target IS NULL THEN
    EXECUTE format('CREATE SCHEMA %I', {sql_literal(schema)});
    RETURN;
  END IF;
  LOOP
    SELECT format('DROP %s %s CASCADE',
                  CASE o.type WHEN 'composite type' THEN 'TYPE'
                              WHEN 'statistics object' THEN 'STATISTICS'
                              ELSE upper(o.type) END,
                  o.identity)
      INTO statement
      FROM pg_depend d, LATERAL pg_identify_object(d.classid, d.objid, 0) AS o
     WHERE d.refclassid = 'pg_namespace'::regclass AND d.refobjid = target
       AND d.deptype = 'n' AND d.classid IN ({_SCHEMA_OBJECT_CLASSES})
       -- Not an extension's, nor part of another object (a range's multirange type).
       AND NOT EXISTS (SELECT FROM pg_depend x
                       WHERE x.classid = d.classid AND x.objid = d.objid
                         AND (x.deptype = 'e'
                              OR (x.deptype = 'i'
                                  AND (x.refclassid, x.refobjid) <> (x.classid, x.objid))))
     LIMIT 1;
    EXIT WHEN statement IS NULL;
    EXECUTE statement;
  END LOOP;
END
$coursehub$;"""
