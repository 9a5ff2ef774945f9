namespace Tally.Ledger.Stores;

/// <summary>
/// The schema, as numbered migrations written once for both stores. Times are Unix milliseconds (UTC) and
/// credits BIGINT, so both engines store the same values. Every row carries organization_id and every hot
/// statement names one organization, so the tables can be distributed by organization (docs/scaling.md).
/// </summary>
internal static class Schema
{
    /// <summary>
    /// {identity} is the auto-numbered primary key of each dialect; {without_rowid} lets SQLite keep a table
    /// keyed by text in its primary-key B-tree alone (one insert instead of two on the hot path).
    /// </summary>
    public static readonly (int Version, string[] Statements)[] Migrations =
    [
        (1,
        [
            """
            CREATE TABLE IF NOT EXISTS organizations (
                id TEXT PRIMARY KEY, name TEXT NOT NULL, external_id TEXT, status TEXT NOT NULL, created_at BIGINT NOT NULL,
                plan TEXT, credits_per_period BIGINT, period TEXT, anchor BIGINT, rollover_max BIGINT,
                period_start BIGINT, period_end BIGINT, used_in_period BIGINT NOT NULL, next_deadline BIGINT)
            """,
            "CREATE INDEX IF NOT EXISTS organizations_next_deadline ON organizations (next_deadline)",
            """
            CREATE TABLE IF NOT EXISTS grants (
                id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, credits BIGINT NOT NULL, remaining BIGINT NOT NULL,
                source TEXT NOT NULL, priority BIGINT NOT NULL, effective_at BIGINT NOT NULL, expires_at BIGINT,
                created_at BIGINT NOT NULL, period_start BIGINT, expired BIGINT NOT NULL,
                CHECK (remaining >= 0 AND remaining <= credits))
            """,
            "CREATE INDEX IF NOT EXISTS grants_organization ON grants (organization_id, expired)",
            // One allowance and one rollover per organization per period, whatever the timing or the node (rule 6).
            "CREATE UNIQUE INDEX IF NOT EXISTS grants_one_per_period ON grants (organization_id, source, period_start)",
            """
            CREATE TABLE IF NOT EXISTS holds (
                id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, credits BIGINT NOT NULL, status TEXT NOT NULL,
                expires_at BIGINT NOT NULL, created_at BIGINT NOT NULL, allocations TEXT NOT NULL,
                assistant_id TEXT, identifier TEXT, captured BIGINT NOT NULL, settled_at BIGINT)
            """,
            "CREATE INDEX IF NOT EXISTS holds_open ON holds (organization_id, status)",
            """
            CREATE TABLE IF NOT EXISTS consumptions (
                id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, credits BIGINT NOT NULL, refunded BIGINT NOT NULL,
                allocations TEXT NOT NULL, period_start BIGINT, assistant_id TEXT, identifier TEXT, metadata TEXT,
                hold_id TEXT, created_at BIGINT NOT NULL, CHECK (refunded >= 0 AND refunded <= credits)) {without_rowid}
            """,
            "CREATE INDEX IF NOT EXISTS consumptions_usage ON consumptions (organization_id, created_at)",
            """
            CREATE TABLE IF NOT EXISTS ledger_entries (
                id {identity}, organization_id TEXT NOT NULL, kind TEXT NOT NULL, grant_id TEXT,
                credits BIGINT NOT NULL, reference_id TEXT, created_at BIGINT NOT NULL)
            """,
            "CREATE INDEX IF NOT EXISTS ledger_entries_organization ON ledger_entries (organization_id, id)",
            // Rule 2: the key is UNIQUE per organization in the same transaction that writes the change.
            """
            CREATE TABLE IF NOT EXISTS idempotency_keys (
                organization_id TEXT NOT NULL, key TEXT NOT NULL, fingerprint TEXT NOT NULL, result TEXT NOT NULL,
                created_at BIGINT NOT NULL, PRIMARY KEY (organization_id, key)) {without_rowid}
            """,
            """
            CREATE TABLE IF NOT EXISTS assistants (
                id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, name TEXT NOT NULL, created_at BIGINT NOT NULL, deleted_at BIGINT)
            """,
            "CREATE INDEX IF NOT EXISTS assistants_organization ON assistants (organization_id)",
            """
            CREATE TABLE IF NOT EXISTS api_keys (
                id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, name TEXT, public_key TEXT NOT NULL UNIQUE,
                secret_hash TEXT NOT NULL UNIQUE, scopes BIGINT NOT NULL, created_at BIGINT NOT NULL, revoked_at BIGINT)
            """,
            "CREATE INDEX IF NOT EXISTS api_keys_organization ON api_keys (organization_id)",
            "CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
        ]),
        (2,
        [
            """
            CREATE TABLE IF NOT EXISTS audit_log (
                id {identity}, at BIGINT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, organization_id TEXT,
                status BIGINT NOT NULL, request_id TEXT)
            """,
        ]),
        // Rule 6 asks for one live allowance per period. A plan change or a new subscription within a period
        // expires the period's allowance and issues another for the same period start, which the index of
        // version 1 refused (failing the whole batch); expired grants are history and stay out of the index.
        (3,
        [
            "DROP INDEX IF EXISTS grants_one_per_period",
            "CREATE UNIQUE INDEX IF NOT EXISTS grants_one_live_per_period ON grants (organization_id, source, period_start) WHERE expired = 0",
        ]),
    ];
}
