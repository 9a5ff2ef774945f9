using System.Collections.Concurrent;
using System.Data.Common;
using Microsoft.Data.Sqlite;
using Tally.Ledger.Engine;
using Tally.Ledger.Model;

namespace Tally.Ledger.Stores.Sqlite;

/// <summary>
/// The embedded store: two SQLite files in WAL mode with synchronous=FULL. The engine's writer appends each
/// batch's rows to a journal (tally-journal.db: one row per batch, so a commit writes a few sequential pages and
/// one sync), and a projector thread writes the journaled batches into the tables of tally.db, many batches per
/// transaction, so that each organization's index pages take many rows per write instead of one (an
/// organization-keyed page per row and index was what bounded the writer; bench/RESULTS.md). A batch is durable,
/// and answered, once its journal row is committed; the tables follow within one projection.
/// Because this process is the only writer, committed organization state is served from memory; until the
/// projector has written a batch, the writer finds that batch's idempotency records, consumptions and holds in
/// memory (<see cref="PendingBatches"/>), and a read of the tables waits for the projector to reach the last
/// journaled batch, so that every read sees everything answered before it.
/// </summary>
public sealed partial class SqliteLedgerStore : RelationalStore
{
    public const string FileName = "tally.db";

    /// <summary>The journal of batches answered but perhaps not yet written into tally.db's tables.</summary>
    public const string JournalFileName = "tally-journal.db";

    /// <summary>The file a running store holds locked, so that a second one refuses the folder (see <see cref="TakeFolder"/>).</summary>
    public const string LockFileName = "tally.lock";

    /// <summary>The setting, in tally.db, that holds the sequence number of the last batch its tables contain.</summary>
    private const string ProjectedSetting = "journal_projected_through";

    private readonly string connectionString;
    private readonly string journalConnectionString;
    private readonly ConcurrentDictionary<string, OrganizationState> committed = new(StringComparer.Ordinal);
    private readonly Dictionary<string, SqliteCommand> prepared = new(StringComparer.Ordinal);
    private readonly PendingBatches pending = new();
    private readonly int logPagesMax;
    private readonly int unwrittenRowsMax;
    private IDisposable? folderLock;
    private SqliteConnection? lookupConnection;
    private SqliteConnection? journalConnection;
    private WalCheckpointer? checkpointer;
    private WalCheckpointer? journalCheckpointer;
    private Projector? projector;
    private JournalStatements? journalStatements;
    private long journaledThrough;
    private long deletedThrough;

    public SqliteLedgerStore(string dataDirectory) : this(dataDirectory, WalCheckpointer.LogPagesMax)
    {
    }

    /// <summary>
    /// A store whose write-ahead logs start over at <paramref name="logPagesMax"/> pages, and whose writer waits while
    /// <paramref name="unwrittenRowsMax"/> rows wait to be written into the tables (tests use small ones; null is the
    /// store's own limit).
    /// </summary>
    internal SqliteLedgerStore(string dataDirectory, int logPagesMax, int? unwrittenRowsMax = null)
    {
        this.logPagesMax = logPagesMax;
        this.unwrittenRowsMax = unwrittenRowsMax ?? Projector.UnwrittenRowsMax;
        DatabasePath = Path.GetFullPath(Path.Combine(dataDirectory, FileName));
        JournalPath = Path.GetFullPath(Path.Combine(dataDirectory, JournalFileName));
        connectionString = ConnectionString(DatabasePath);
        journalConnectionString = ConnectionString(JournalPath);
    }

    private static string ConnectionString(string path) =>
        new SqliteConnectionStringBuilder { DataSource = path, Pooling = true, DefaultTimeout = 30 }.ToString();

    public string DatabasePath { get; }

    public string JournalPath { get; }

    /// <summary>
    /// Batches answered (journaled) and not yet written into the tables: what a read of the tables (usage, ledger)
    /// may wait for. Bounded by the writer's limit of rows not yet written (<see cref="Projector.UnwrittenRowsMax"/>);
    /// 0 before the store is initialized.
    /// </summary>
    public long ProjectorLagBatches => projector is { } active ? Math.Max(0, Volatile.Read(ref journaledThrough) - active.ProjectedThrough) : 0;

    /// <summary>Rows journaled and not yet written into the tables, for tests; 0 before the store is initialized.</summary>
    internal long UnwrittenRows => projector?.UnwrittenRows ?? 0;

    /// <summary>tally.db's checkpointer, for tests; null before the store is initialized.</summary>
    internal WalCheckpointer? Checkpointer => checkpointer;

    /// <summary>Checkpoints of tally.db's log so far (zeros before the store is initialized).</summary>
    public CheckpointCounts TablesCheckpoints => checkpointer?.Counts ?? default;

    /// <summary>Checkpoints of the journal's log so far (zeros before the store is initialized).</summary>
    public CheckpointCounts JournalCheckpoints => journalCheckpointer?.Counts ?? default;

    /// <summary>Returns once the tables hold every batch journaled so far (for tests that read the file directly).</summary>
    internal Task WaitForTablesAsync() => ActiveProjector.WaitForAsync(Volatile.Read(ref journaledThrough), CancellationToken.None);

    public override bool IsSoleWriter => true;
    protected override string IdentityColumn => "INTEGER PRIMARY KEY AUTOINCREMENT";
    protected override string WithoutRowIdClause => "WITHOUT ROWID";

    /// <summary>Pages kept in memory by the projector's connection: 64 MiB keeps the hot indexes cached.</summary>
    private const int WriteCacheKibibytes = 65_536;

    /// <summary>
    /// The projector syncs one commit of the tables in this many batches; the writer's next commit deletes the
    /// journal rows through it (their pages are then reused, so the journal stays the size of the projector's lag).
    /// </summary>
    private const int SyncedCommitEvery = 64;

    /// <summary>
    /// The journal's log starts over at 4,096 pages (16 MiB), not 128 MiB: a log file that stops growing is
    /// overwritten in place, and syncing an overwrite needs no file-system journal commit, which would also wait
    /// for the data the projector wrote to tally.db meanwhile (a journal commit's sync then cost milliseconds).
    /// </summary>
    private const int JournalLogPagesMax = 4_096;

    /// <summary>
    /// Holds <paramref name="dataDirectory"/> for the caller alone until the returned handle is disposed: an open store
    /// holds its folder, and `tally seed` holds it while it writes the tables directly. A second process serving the
    /// same folder would write the journal into the tables and forget it while the first still answers from its
    /// memory (seen: the first one's projector then met keys already written, and stopped, and the journal had lost
    /// batches the tables lacked). The lock is the operating system's (flock), so it ends with the process, however
    /// that ends. `tally backup` only reads.
    /// </summary>
    /// <exception cref="StoreOpenException">Another process (or another store in this one) holds the folder.</exception>
    public static IDisposable TakeFolder(string dataDirectory)
    {
        var path = Path.Combine(dataDirectory, LockFileName);
        try
        {
            return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException error) when (!Directory.Exists(path))
        {
            throw new StoreOpenException(
                $"Another Tally store is open on {dataDirectory} (it holds {path}); stop it, or use another data folder.", error);
        }
        catch (Exception error) when (error is IOException or UnauthorizedAccessException)
        {
            throw new StoreOpenException($"Cannot take {path} to hold the data folder: {error.Message}", error);
        }
    }

    public override async Task InitializeAsync(CancellationToken cancellationToken)
    {
        var dataDirectory = Path.GetDirectoryName(DatabasePath)!;
        try
        {
            Directory.CreateDirectory(dataDirectory);
        }
        catch (Exception error) when (error is IOException or UnauthorizedAccessException)
        {
            throw new StoreOpenException($"Cannot use {dataDirectory} as the data folder: {error.Message}", error);
        }
        folderLock = TakeFolder(dataDirectory);
        SqliteConnection? tables = null;
        TableWriter? tableWriter = null;
        try
        {
            tables = await OpenAsync(connectionString, WriteCacheKibibytes, cancellationToken);
            await MigrateAsync(tables, cancellationToken);
            journalConnection = await OpenAsync(journalConnectionString, null, cancellationToken);
            await ExecuteAsync(journalConnection, null, "CREATE TABLE IF NOT EXISTS batches (sequence INTEGER PRIMARY KEY, changes BLOB NOT NULL)", cancellationToken);
            var projectedThrough = ProjectedThroughIn(tables);
            // A batch answered before a crash or a stop and not yet in the tables is written into them now, before
            // anything is read, in the order it was journaled.
            var unprojected = ReadJournal(journalConnection, projectedThrough);
            CheckContinues(unprojected, projectedThrough);
            tableWriter = new TableWriter(tables);
            journaledThrough = unprojected.Count > 0 ? unprojected[^1].Sequence : projectedThrough;
            // Also with nothing to replay, a synced commit: the tables' last commits may not have been synced (the
            // projector syncs one in 64 batches, and a crash leaves the log in the OS's cache), and the journal
            // forgets its batches only once the tables hold them durably.
            try
            {
                tableWriter.Write(unprojected, journaledThrough, durable: true);
            }
            catch (SqliteException error) when (unprojected.Count > 0)
            {
                throw new StoreOpenException(
                    $"Writing journaled batches {unprojected[0].Sequence} to {unprojected[^1].Sequence} into {DatabasePath} failed; " +
                    "the journal keeps them, and the store will not serve until they are written.", error);
            }
            await ExecuteAsync(journalConnection, null, "DELETE FROM batches", cancellationToken);
            deletedThrough = journaledThrough;
            checkpointer = new WalCheckpointer(new SqliteConnectionStringBuilder(connectionString) { Pooling = false }.ToString(), logPagesMax);
            journalCheckpointer = new WalCheckpointer(new SqliteConnectionStringBuilder(journalConnectionString) { Pooling = false }.ToString(),
                Math.Min(logPagesMax, JournalLogPagesMax));
            lookupConnection = new SqliteConnection(connectionString);
            await lookupConnection.OpenAsync(cancellationToken);
            projector = new Projector(tableWriter, checkpointer, journaledThrough, unwrittenRowsMax);
        }
        catch (Exception error)
        {
            if (tableWriter is null) tables?.Dispose();
            else tableWriter.Dispose();
            checkpointer?.Dispose();
            checkpointer = null;
            journalCheckpointer?.Dispose();
            journalCheckpointer = null;
            lookupConnection?.Dispose();
            lookupConnection = null;
            journalConnection?.Dispose();
            journalConnection = null;
            ReleaseFolder();
            // A file that is not a SQLite database (a partial copy, say), one SQLite cannot open, or a folder it
            // cannot write: the operator's to fix, so one line says which file and why.
            if (error is SqliteException or IOException or UnauthorizedAccessException)
            {
                throw new StoreOpenException($"Cannot open the store in {dataDirectory}: {error.Message}", error);
            }
            throw;
        }
    }

    private void ReleaseFolder()
    {
        folderLock?.Dispose();
        folderLock = null;
    }

    /// <summary>
    /// Refuses a journal that does not continue the tables: its first batch after them must be the next number, and
    /// each batch the next again. A gap means the files are not of one store (a restored tally.db beside a newer
    /// journal, say); writing the journal onto such tables would corrupt them silently.
    /// </summary>
    private void CheckContinues(List<JournaledBatch> unprojected, long projectedThrough)
    {
        var expected = projectedThrough + 1;
        foreach (var batch in unprojected)
        {
            if (batch.Sequence != expected)
            {
                throw new StoreOpenException(
                    $"{JournalPath} does not continue {DatabasePath}: batch {expected} is missing (found {batch.Sequence}). " +
                    "The two files must come from the same data folder; restore a backup into an empty folder (docs/operations.md).");
            }
            expected++;
        }
    }

    /// <summary>
    /// A write connection: WAL lets readers run beside the writer; FULL syncs the WAL at every commit (SPEC rule 3);
    /// the log is checkpointed by a WalCheckpointer on its own connection, not inside the committing writer.
    /// </summary>
    private static async Task<SqliteConnection> OpenAsync(string connectionString, int? cacheKibibytes, CancellationToken cancellationToken)
    {
        var connection = new SqliteConnection(new SqliteConnectionStringBuilder(connectionString) { Pooling = false }.ToString());
        await connection.OpenAsync(cancellationToken);
        foreach (var pragma in (string[])["journal_mode=WAL", "synchronous=FULL", "wal_autocheckpoint=0"])
        {
            await using var command = connection.CreateCommand();
            command.CommandText = "PRAGMA " + pragma;
            await command.ExecuteNonQueryAsync(cancellationToken);
        }
        if (cacheKibibytes is { } kibibytes)
        {
            await using var command = connection.CreateCommand();
            command.CommandText = $"PRAGMA cache_size=-{kibibytes}";
            await command.ExecuteNonQueryAsync(cancellationToken);
        }
        return connection;
    }

    private async Task MigrateAsync(SqliteConnection connection, CancellationToken cancellationToken)
    {
        await using var transaction = (SqliteTransaction)await connection.BeginTransactionAsync(cancellationToken);
        await ExecuteAsync(connection, transaction,
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)", cancellationToken);
        foreach (var (version, _) in Schema.Migrations)
        {
            await using var check = Command(connection, transaction, "SELECT COUNT(*) FROM schema_migrations WHERE version = @version", ("@version", (long)version));
            if (Convert.ToInt64(await check.ExecuteScalarAsync(cancellationToken)) > 0) continue;
            foreach (var statement in MigrationStatements(version)) await ExecuteAsync(connection, transaction, statement, cancellationToken);
            await ExecuteAsync(connection, transaction, "INSERT INTO schema_migrations (version, applied_at) VALUES (@version, @now)",
                cancellationToken, ("@version", (long)version), ("@now", DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()));
        }
        await transaction.CommitAsync(cancellationToken);
    }

    /// <summary>
    /// An online, consistent copy of the store in one file: `VACUUM INTO` reads one snapshot of tally.db while the
    /// server keeps writing and writes a compact copy, into which the journaled batches that snapshot lacks are
    /// then written; the file is itself a complete store (restore = copy it to `tally.db` in an empty data folder).
    /// The copy is written under a temporary name beside the target, synced, and renamed to the target only when
    /// complete: a backup that is stopped or fails midway leaves no file under the target's name that looks like a
    /// backup (a killed one leaves its `.partial` file, which is safe to delete).
    /// </summary>
    /// <exception cref="IOException">No store in the folder, or a target that exists, is a folder, or has no folder.</exception>
    public static async Task BackupAsync(string dataDirectory, string targetFile, CancellationToken cancellationToken)
    {
        var source = Path.Combine(dataDirectory, FileName);
        if (!File.Exists(source)) throw new FileNotFoundException($"No Tally store at {source}.");
        var target = Path.GetFullPath(targetFile);
        if (File.Exists(target) || Directory.Exists(target)) throw new IOException($"{target} exists already; choose a new file.");
        if (!Directory.Exists(Path.GetDirectoryName(target))) throw new IOException($"The folder of {target} does not exist; create it first.");
        var partial = $"{target}.{Guid.NewGuid():N}.partial";
        try
        {
            await CopyAsync(dataDirectory, source, partial, cancellationToken);
            await using (var file = new FileStream(partial, FileMode.Open, FileAccess.ReadWrite)) file.Flush(flushToDisk: true);
            File.Move(partial, target, overwrite: false);
        }
        finally
        {
            // Nothing of a copy that failed is left (after the rename there is nothing under these names).
            foreach (var suffix in (string[])["", "-journal", "-wal", "-shm"]) File.Delete(partial + suffix);
        }
    }

    private static async Task CopyAsync(string dataDirectory, string source, string target, CancellationToken cancellationToken)
    {
        // The journal is read first: rows leave it only once the tables hold them, so whatever the tables' copy
        // below lacks is still in what was read here.
        var journal = Path.Combine(dataDirectory, JournalFileName);
        List<JournaledBatch> journaled = [];
        if (File.Exists(journal))
        {
            await using var journalConnection = new SqliteConnection(ReadOnly(journal));
            await journalConnection.OpenAsync(cancellationToken);
            journaled = ReadJournal(journalConnection, 0);
        }
        await using (var connection = new SqliteConnection(ReadOnly(source)))
        {
            await connection.OpenAsync(cancellationToken);
            await using var command = connection.CreateCommand();
            command.CommandText = "VACUUM INTO @target";
            command.Parameters.AddWithValue("@target", target);
            await command.ExecuteNonQueryAsync(cancellationToken);
        }
        await using var copy = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = target, Pooling = false }.ToString());
        await copy.OpenAsync(cancellationToken);
        var projectedThrough = ProjectedThroughIn(copy);
        var missing = journaled.Where(batch => batch.Sequence > projectedThrough).ToList();
        if (missing.Count == 0) return;
        using var writer = new TableWriter(copy);
        writer.Write(missing, missing[^1].Sequence, durable: true);
    }

    private static string ReadOnly(string path) =>
        new SqliteConnectionStringBuilder { DataSource = path, Mode = SqliteOpenMode.ReadOnly, Pooling = false }.ToString();

    /// <summary>Reads the synchronous setting of the journal, which makes every answer durable, so tests can show durability is on.</summary>
    public async Task<long> SynchronousModeAsync()
    {
        await using var command = JournalConnection.CreateCommand();
        command.CommandText = "PRAGMA synchronous";
        return Convert.ToInt64(await command.ExecuteScalarAsync());
    }

    public override async Task<IBatchTransaction> BeginBatchAsync(IReadOnlyList<string> sortedOrganizationIds, BatchLookupRequest lookups, CancellationToken cancellationToken)
    {
        // Forget what the tables hold now; what remains pending is newer than anything the reads below can miss.
        pending.Forget(ActiveProjector.ProjectedThrough);
        // The batch journaled meanwhile joins the pending ones. One that failed is dropped: its waiters were failed,
        // and a batch decided on it since failed too, so nothing decided on it remains.
        if (journaling is { Journaled.IsCompleted: true }) await SettleJournalingAsync(throwIfFailed: false);
        // Still being journaled, it is the newest state: this batch is decided on it, and fails if it does.
        var deciding = journaling?.Changes;
        var connection = LookupConnection;
        // No transaction: an organization not in memory has had no batch since the store started, so the tables
        // hold all of it and nothing changes it meanwhile; and a record not pending was in the tables before the
        // lookup began (it was forgotten only once they held it).
        var organizations = new Dictionary<string, OrganizationState>(sortedOrganizationIds.Count, StringComparer.Ordinal);
        foreach (var id in sortedOrganizationIds)
        {
            var state = deciding?.Organizations.GetValueOrDefault(id) ?? committed.GetValueOrDefault(id)
                ?? await LoadOrganizationAsync(connection, null, id, cancellationToken);
            if (state is not null) organizations[id] = state;
        }
        var found = pending.Find(lookups, deciding, out var notPending);
        var stored = await LookupAsync(connection, null, notPending, cancellationToken);
        foreach (var (key, record) in stored.Idempotency) found.Idempotency[key] = record;
        foreach (var (id, consumption) in stored.Consumptions) found.Consumptions[id] = consumption;
        foreach (var (id, hold) in stored.Holds) found.Holds[id] = hold;
        return new Batch(this, organizations, found);
    }

    public override async ValueTask<OrganizationState?> ReadOrganizationAsync(string organizationId, CancellationToken cancellationToken)
    {
        if (committed.TryGetValue(organizationId, out var state)) return state;
        await using var connection = (SqliteConnection)await OpenReadConnectionAsync(cancellationToken);
        var loaded = await LoadOrganizationAsync(connection, null, organizationId, cancellationToken);
        if (loaded is null) return null;
        // TryAdd, never overwrite: if the writer published a newer state meanwhile, that one must win.
        return committed.GetOrAdd(organizationId, loaded);
    }

    /// <summary>A read of the tables waits until they hold every batch journaled when it began.</summary>
    protected override async Task<DbConnection> OpenReadConnectionAsync(CancellationToken cancellationToken)
    {
        await ActiveProjector.WaitForAsync(Volatile.Read(ref journaledThrough), cancellationToken);
        var connection = new SqliteConnection(connectionString);
        await connection.OpenAsync(cancellationToken);
        return connection;
    }

    /// <summary>The writer's lookups are prepared once and reused for every batch.</summary>
    protected override DbCommand Command(DbConnection connection, DbTransaction? transaction, string sql, params (string Name, object? Value)[] parameters)
    {
        if (!ReferenceEquals(connection, lookupConnection)) return base.Command(connection, transaction, sql, parameters);
        if (!prepared.TryGetValue(sql, out var command))
        {
            command = lookupConnection.CreateCommand();
            command.CommandText = sql;
            foreach (var (name, _) in parameters) command.Parameters.Add(new SqliteParameter(name, null));
            prepared[sql] = command;
        }
        command.Transaction = (SqliteTransaction?)transaction;
        // The same SQL always comes with the same parameters in the same order, so values are set in place.
        for (var index = 0; index < parameters.Length; index++) command.Parameters[index].Value = parameters[index].Value ?? DBNull.Value;
        return command;
    }

    protected override ValueTask ReturnAsync(DbCommand command) =>
        ReferenceEquals(command.Connection, lookupConnection) ? ValueTask.CompletedTask : command.DisposeAsync();

    /// <summary>Times an organization that keeps changing is compared again before verify passes over it.</summary>
    private const int VerifyComparisonsMax = 3;

    /// <summary>
    /// Compares each organization in memory with the tables. The tables lag the memory by up to the projector's
    /// queue, so a state is compared only with tables that hold it: the memory is read first, then the tables are
    /// awaited up to the last journaled batch, and a difference counts only if the memory did not move meanwhile
    /// (an organization still changing is compared again, and passed over after a few tries: a change under load).
    /// </summary>
    protected override async Task<IReadOnlyList<string>> VerifyMemoryAsync(CancellationToken cancellationToken)
    {
        var differences = new List<string>();
        var toCompare = committed.ToArray();
        for (var attempt = 0; attempt < VerifyComparisonsMax && toCompare.Length > 0; attempt++)
        {
            var changing = new List<KeyValuePair<string, OrganizationState>>();
            await using var connection = await OpenReadConnectionAsync(cancellationToken);
            foreach (var (id, inMemory) in toCompare)
            {
                var onDisk = await LoadOrganizationAsync(connection, null, id, cancellationToken);
                if (onDisk is not null && Agree(onDisk, inMemory)) continue;
                var now = committed[id];
                if (!ReferenceEquals(now, inMemory)) changing.Add(new(id, now));
                else differences.Add(onDisk is null ? $"organization {id} is in memory but not on disk" : $"organization {id}: memory and disk disagree");
            }
            toCompare = [.. changing];
        }
        return differences;
    }

    private static bool Agree(OrganizationState onDisk, OrganizationState inMemory)
    {
        // Grants are compared by id: memory keeps creation order, the disk orders by (created_at, id), and two
        // grants made in the same millisecond (an allowance and its rollover) have random-ordered v7 ids.
        // Credits too: an allowance resized within its period changes them, and what it may take back follows them.
        var grantsOnDisk = onDisk.Grants.Select(grant => (grant.Id, grant.Credits, grant.Remaining)).Order();
        var grantsInMemory = inMemory.Grants.Select(grant => (grant.Id, grant.Credits, grant.Remaining)).Order();
        return onDisk.UsedInPeriod == inMemory.UsedInPeriod && onDisk.OpenHolds.Count == inMemory.OpenHolds.Count
            && grantsOnDisk.SequenceEqual(grantsInMemory);
    }

    public override async ValueTask DisposeAsync()
    {
        // The projector first writes what it has been given, so that a stopped store's tables are complete.
        projector?.Dispose();
        projector = null;
        foreach (var command in prepared.Values) await command.DisposeAsync();
        prepared.Clear();
        checkpointer?.Dispose();
        checkpointer = null;
        journalCheckpointer?.Dispose();
        journalCheckpointer = null;
        if (lookupConnection is not null) await lookupConnection.DisposeAsync();
        lookupConnection = null;
        journalStatements?.Dispose();
        journalStatements = null;
        if (journalConnection is not null) await journalConnection.DisposeAsync();
        journalConnection = null;
        SqliteConnection.ClearAllPools();
        ReleaseFolder();
    }

    private SqliteConnection LookupConnection => lookupConnection ?? throw NotInitialized();
    private SqliteConnection JournalConnection => journalConnection ?? throw NotInitialized();
    private Projector ActiveProjector => projector ?? throw NotInitialized();
    private static InvalidOperationException NotInitialized() => new("The store is not initialized.");

    /// <summary>The batch whose journal commit may still be under way, and its sequence number once it is durable.</summary>
    private sealed record JournalingBatch(BatchChanges Changes, Task<long> Journaled);

    /// <summary>Set and settled by the writer alone, between its batches.</summary>
    private JournalingBatch? journaling;

    /// <summary>
    /// Waits for the batch being journaled, if any; once durable, its records join the pending ones. If it failed,
    /// nothing of it remains in memory, and with <paramref name="throwIfFailed"/> the failure is passed on to the
    /// batch decided on it.
    /// </summary>
    private async Task SettleJournalingAsync(bool throwIfFailed)
    {
        if (journaling is not { } previous) return;
        journaling = null;
        long sequence;
        try
        {
            sequence = await previous.Journaled;
        }
        catch (Exception error)
        {
            if (throwIfFailed) throw new InvalidOperationException("The batch this one was decided on could not be stored durably.", error);
            return;
        }
        pending.Add(sequence, previous.Changes);
    }

    /// <summary>
    /// The journal's side of a commit, one batch at a time in the writer's order: appends the batch durably, then
    /// publishes its organizations' state (readers never see a state that is not durable) and hands its rows to the
    /// projector, waiting while the most rows it may be behind wait for it (<see cref="Projector.UnwrittenRowsMax"/>).
    /// If the projector stopped meanwhile, the journal keeps the batch for the next start, and reads of the tables fail.
    /// </summary>
    private async Task<long> JournalAsync(byte[] encoded, List<(TableWrite Table, List<object?[]> Rows)> rows,
        List<(string Sql, (string Name, object? Value)[] Parameters)> updates, BatchChanges changes, CancellationToken cancellationToken)
    {
        var sequence = Journal(encoded);
        foreach (var (id, state) in changes.Organizations) committed[id] = state;
        await ActiveProjector.TryEnqueueAsync(new JournaledBatch(sequence, rows, updates), cancellationToken);
        journalCheckpointer?.Committed(JournalConnection);
        return sequence;
    }

    /// <summary>
    /// Appends one batch to the journal and commits it durably, with the deletion of the rows the tables now hold
    /// durably in the same transaction; returns the batch's sequence number. The statements are prepared once.
    /// </summary>
    private long Journal(byte[] changes)
    {
        var statements = journalStatements ??= new JournalStatements(JournalConnection);
        var sequence = journaledThrough + 1;
        var durableThrough = ActiveProjector.DurableThrough;
        if (durableThrough > deletedThrough)
        {
            using var transaction = JournalConnection.BeginTransaction();
            statements.Run(transaction, durableThrough, sequence, changes);
            transaction.Commit();
            deletedThrough = durableThrough;
        }
        else
        {
            // One statement is its own transaction: committed, and synced, when it returns.
            statements.Run(null, null, sequence, changes);
        }
        Volatile.Write(ref journaledThrough, sequence);
        return sequence;
    }

    /// <summary>The writer's statements on the journal, prepared once.</summary>
    private sealed class JournalStatements(SqliteConnection connection) : IDisposable
    {
        private readonly SqliteCommand insert = Prepare(connection, "INSERT INTO batches (sequence, changes) VALUES (@sequence, @changes)", "@sequence", "@changes");
        private readonly SqliteCommand delete = Prepare(connection, "DELETE FROM batches WHERE sequence <= @through", "@through");

        /// <summary>Deletes the rows through <paramref name="deleteThrough"/>, if given, and inserts the batch.</summary>
        public void Run(SqliteTransaction? transaction, long? deleteThrough, long sequence, byte[] changes)
        {
            insert.Transaction = delete.Transaction = transaction;
            if (deleteThrough is { } through)
            {
                delete.Parameters[0].Value = through;
                delete.ExecuteNonQuery();
            }
            insert.Parameters[0].Value = sequence;
            insert.Parameters[1].Value = changes;
            insert.ExecuteNonQuery();
        }

        private static SqliteCommand Prepare(SqliteConnection connection, string sql, params string[] parameters)
        {
            var command = connection.CreateCommand();
            command.CommandText = sql;
            foreach (var name in parameters) command.Parameters.Add(new SqliteParameter(name, null));
            return command;
        }

        public void Dispose()
        {
            insert.Dispose();
            delete.Dispose();
        }
    }

    private sealed class Batch(SqliteLedgerStore store, Dictionary<string, OrganizationState> organizations, BatchLookups lookups)
        : IBatchTransaction
    {
        public IReadOnlyDictionary<string, OrganizationState> Organizations => organizations;

        public BatchLookups Lookups => lookups;

        /// <summary>
        /// Encodes the batch, waits for the batch before it to be durable (the journal is written in order, and this
        /// batch was decided on that one: if it failed, this one fails here), and starts the journal's commit of this
        /// one on another thread, so that the writer decides its next batch while the journal syncs.
        /// </summary>
        public async Task<Task> CommitAsync(BatchChanges changes, CancellationToken cancellationToken)
        {
            var projector = store.ActiveProjector;
            // A stopped projector fails the batch before anything is written, so that its callers' failure is true.
            projector.ThrowIfStopped();
            var (rows, updates) = (RowsToWrite(changes), UpdatesToWrite(changes));
            var encoded = JournaledBatch.Encode(rows, updates);
            await store.SettleJournalingAsync(throwIfFailed: true);
            var journaled = Task.Run(() => store.JournalAsync(encoded, rows, updates, changes, cancellationToken), CancellationToken.None);
            store.journaling = new JournalingBatch(changes, journaled);
            return journaled;
        }

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }
}
