using System.Globalization;
using System.Text;
using System.Threading.Channels;
using Microsoft.Data.Sqlite;
using Tally.Ledger.Engine;

namespace Tally.Ledger.Stores.Sqlite;

// The journal of batches and the projector that writes them into the tables (see SqliteLedgerStore).
public sealed partial class SqliteLedgerStore
{
    /// <summary>One batch's writes, as the journal keeps them and the projector applies them.</summary>
    private sealed record JournaledBatch(
        long Sequence, List<(TableWrite Table, List<object?[]> Rows)> Rows, List<(string Sql, (string Name, object? Value)[] Parameters)> Updates)
    {
        /// <summary>Rows of every table, which is what the projector's transactions are sized by.</summary>
        public int RowCount { get; } = Rows.Sum(table => table.Rows.Count) + Updates.Count;

        private const byte FormatVersion = 1;
        private const byte NullValue = 0, IntegerValue = 1, TextValue = 2;

        /// <summary>
        /// Version, then per table its number in <see cref="TableWrites"/>, its column count, its row count and each
        /// row's values in column order; then the updates, each its SQL and its named values. A value is a tag and its bytes.
        /// </summary>
        public static byte[] Encode(List<(TableWrite Table, List<object?[]> Rows)> tables, List<(string Sql, (string Name, object? Value)[] Parameters)> updates)
        {
            using var stream = new MemoryStream(256 * (tables.Sum(table => table.Rows.Count) + 1));
            using var writer = new BinaryWriter(stream, Encoding.UTF8);
            writer.Write(FormatVersion);
            writer.Write(tables.Count);
            foreach (var (table, rows) in tables)
            {
                writer.Write((byte)Array.IndexOf(TableWrites, table));
                writer.Write((byte)table.Columns.Length);
                writer.Write(rows.Count);
                foreach (var row in rows)
                {
                    foreach (var value in row) WriteValue(writer, value);
                }
            }
            writer.Write(updates.Count);
            foreach (var (sql, parameters) in updates)
            {
                writer.Write(sql);
                writer.Write(parameters.Length);
                foreach (var (name, value) in parameters)
                {
                    writer.Write(name);
                    WriteValue(writer, value);
                }
            }
            writer.Flush();
            return stream.ToArray();
        }

        public static JournaledBatch Decode(long sequence, byte[] bytes)
        {
            using var reader = new BinaryReader(new MemoryStream(bytes, writable: false), Encoding.UTF8);
            var version = reader.ReadByte();
            if (version != FormatVersion) throw new InvalidDataException($"Journal batch {sequence} has format {version}; this build reads {FormatVersion}.");
            var tableCount = reader.ReadInt32();
            var tables = new List<(TableWrite, List<object?[]>)>(tableCount);
            for (var tableIndex = 0; tableIndex < tableCount; tableIndex++)
            {
                var number = reader.ReadByte();
                if (number >= TableWrites.Length)
                {
                    throw new InvalidDataException(
                        $"Journal batch {sequence} writes with table write {number}, which this build does not know. Start the build that wrote it.");
                }
                var table = CurrentWrite(TableWrites[number]);
                var columns = reader.ReadByte();
                if (columns != table.Columns.Length)
                {
                    throw new InvalidDataException(
                        $"Journal batch {sequence} writes {columns} columns of {table.Table}; this build writes {table.Columns.Length}. Start the build that wrote it.");
                }
                var rowCount = reader.ReadInt32();
                var rows = new List<object?[]>(rowCount);
                for (var rowIndex = 0; rowIndex < rowCount; rowIndex++)
                {
                    var row = new object?[table.Columns.Length];
                    for (var column = 0; column < row.Length; column++) row[column] = ReadValue(reader);
                    rows.Add(row);
                }
                tables.Add((table, rows));
            }
            var updateCount = reader.ReadInt32();
            var updates = new List<(string, (string, object?)[])>(updateCount);
            for (var updateIndex = 0; updateIndex < updateCount; updateIndex++)
            {
                var sql = reader.ReadString();
                var parameters = new (string, object?)[reader.ReadInt32()];
                for (var parameter = 0; parameter < parameters.Length; parameter++) parameters[parameter] = (reader.ReadString(), ReadValue(reader));
                updates.Add((sql, parameters));
            }
            return new JournaledBatch(sequence, tables, updates);
        }

        private static void WriteValue(BinaryWriter writer, object? value)
        {
            switch (value)
            {
                case null:
                    writer.Write(NullValue);
                    break;
                case long number:
                    writer.Write(IntegerValue);
                    writer.Write(number);
                    break;
                case string text:
                    writer.Write(TextValue);
                    writer.Write(text);
                    break;
                default:
                    throw new InvalidOperationException($"A row value of type {value.GetType().Name} has no column type.");
            }
        }

        private static object? ReadValue(BinaryReader reader) => reader.ReadByte() switch
        {
            NullValue => null,
            IntegerValue => reader.ReadInt64(),
            TextValue => reader.ReadString(),
            var tag => throw new InvalidDataException($"Unknown value tag {tag} in the journal."),
        };
    }

    /// <summary>The journaled batches after <paramref name="after"/>, in order.</summary>
    private static List<JournaledBatch> ReadJournal(SqliteConnection connection, long after)
    {
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT sequence, changes FROM batches WHERE sequence > @after ORDER BY sequence";
        command.Parameters.AddWithValue("@after", after);
        using var reader = command.ExecuteReader();
        var batches = new List<JournaledBatch>();
        while (reader.Read()) batches.Add(JournaledBatch.Decode(reader.GetInt64(0), (byte[])reader.GetValue(1)));
        return batches;
    }

    /// <summary>The sequence number of the last journaled batch the tables of this database hold (0 for none).</summary>
    private static long ProjectedThroughIn(SqliteConnection connection)
    {
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT value FROM settings WHERE name = @name";
        command.Parameters.AddWithValue("@name", ProjectedSetting);
        return command.ExecuteScalar() is string value ? long.Parse(value, CultureInfo.InvariantCulture) : 0;
    }

    /// <summary>
    /// Writes journaled batches into the tables of one database, in one transaction that also records the last
    /// batch's sequence number, so the tables and that number never disagree.
    /// </summary>
    private sealed class TableWriter(SqliteConnection connection) : IDisposable
    {
        /// <summary>The upsert of the projected sequence number, a row written with the batches' own.</summary>
        private static readonly TableWrite ProjectedWrite = new("settings", "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            ("name", ColumnType.Text), ("value", ColumnType.Text));

        private readonly Dictionary<(TableWrite Table, int Rows), RowStatement> statements = [];

        public SqliteConnection Connection => connection;

        /// <summary>
        /// Writes the batches and records <paramref name="through"/> as the last one written; with
        /// <paramref name="durable"/> false the commit is not synced (synchronous=NORMAL: it survives the process, and
        /// the journal still holds the batches for a restart after a power loss).
        /// </summary>
        public void Write(IReadOnlyList<JournaledBatch> batches, long through, bool durable)
        {
            if (durable != synced)
            {
                Execute(null, durable ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL", []);
                synced = durable;
            }
            using var transaction = connection.BeginTransaction();
            foreach (var (table, rows) in Merge(batches)) WriteRows(table, rows);
            // The updates name rows inserted by the same or an earlier batch, so they come after every row.
            foreach (var batch in batches)
            {
                foreach (var (sql, parameters) in batch.Updates) Execute(transaction, sql, parameters);
            }
            WriteRows(ProjectedWrite, [[ProjectedSetting, through.ToString(CultureInfo.InvariantCulture)]]);
            transaction.Commit();
        }

        /// <summary>
        /// The rows of several batches as one: each state upsert's row once, in its last state (an organization or a
        /// grant is written by most batches that touch it, so many batches at once write each of them once), and
        /// every appended row in journal order.
        /// </summary>
        private static List<(TableWrite Table, List<object?[]> Rows)> Merge(IReadOnlyList<JournaledBatch> batches)
        {
            var states = new Dictionary<string, (object?[] Row, bool Broad)>[StateUpserts.Length];
            for (var index = 0; index < states.Length; index++) states[index] = new(StringComparer.Ordinal);
            var appended = new Dictionary<TableWrite, List<object?[]>>();
            foreach (var batch in batches)
            {
                foreach (var (table, rows) in batch.Rows)
                {
                    var family = Array.FindIndex(StateUpserts, upsert => upsert.Broad == table || upsert.Narrow == table);
                    if (family < 0)
                    {
                        if (!appended.TryGetValue(table, out var list)) appended[table] = list = [];
                        list.AddRange(rows);
                        continue;
                    }
                    var broad = StateUpserts[family].Broad == table;
                    foreach (var row in rows)
                    {
                        var id = (string)row[0]!;
                        states[family][id] = (row, broad || (states[family].TryGetValue(id, out var earlier) && earlier.Broad));
                    }
                }
            }
            var merged = new List<(TableWrite, List<object?[]>)>();
            for (var family = 0; family < StateUpserts.Length; family++)
            {
                var (broadTable, narrowTable) = StateUpserts[family];
                // A family of one statement has only broad rows: each was written with its Broad.
                var broadRows = states[family].Values.Where(state => state.Broad).Select(state => state.Row).ToList();
                var narrowRows = states[family].Values.Where(state => !state.Broad).Select(state => state.Row).ToList();
                if (broadRows.Count > 0) merged.Add((broadTable, broadRows));
                if (narrowRows.Count > 0) merged.Add((narrowTable, narrowRows));
            }
            // The appended tables in the order of TableWrites, which is the order of RowsToWrite.
            foreach (var table in TableWrites)
            {
                if (appended.TryGetValue(table, out var rows)) merged.Add((table, rows));
            }
            return merged;
        }

        /// <summary>The connection's synchronous setting: FULL when it was opened.</summary>
        private bool synced = true;

        /// <summary>
        /// Writes a table's rows in statements of 16, 8, … 1 rows (powers of two, so that a handful of prepared
        /// statements per table serve every batch size).
        /// </summary>
        private void WriteRows(TableWrite table, List<object?[]> rows)
        {
            var written = 0;
            while (written < rows.Count)
            {
                var chunk = StatementSize(rows.Count - written, RowsPerStatementMax);
                if (!statements.TryGetValue((table, chunk), out var statement))
                {
                    statement = new RowStatement(connection, MultiRowSql(table, chunk));
                    statements[(table, chunk)] = statement;
                }
                statement.Run(rows, written, chunk);
                written += chunk;
            }
        }

        private void Execute(SqliteTransaction? transaction, string sql, (string Name, object? Value)[] parameters)
        {
            using var command = connection.CreateCommand();
            command.Transaction = transaction;
            command.CommandText = sql;
            foreach (var (name, value) in parameters) command.Parameters.AddWithValue(name, value ?? DBNull.Value);
            command.ExecuteNonQuery();
        }

        public void Dispose()
        {
            foreach (var statement in statements.Values) statement.Dispose();
            statements.Clear();
            connection.Dispose();
        }
    }

    /// <summary>
    /// Rows per INSERT statement. SQLite runs a multi-row VALUES list as one program, so a longer statement
    /// saves a step and a reset per row; values are bound by position (see <see cref="RowStatement"/>), so a
    /// statement's size no longer costs binding time, and 16 keeps the statements few and small.
    /// </summary>
    private const int RowsPerStatementMax = 16;

    /// <summary>An INSERT of <paramref name="rows"/> rows into the table, which rolls back the whole transaction if it fails.</summary>
    /// <remarks>
    /// OR ROLLBACK: a statement of several rows that may fail halfway would otherwise make SQLite copy every page it
    /// changes that the transaction had changed already into a statement journal, a temporary file, so that it could
    /// undo that statement alone. Under T2's load that file took more writes than the tables' log and their
    /// checkpoints together (322 MiB in 12 s, strace). The projector never keeps a transaction that failed: any
    /// failure rolls the whole of it back, and its batches stay in the journal for the next try.
    /// </remarks>
    private static string MultiRowSql(TableWrite table, int rows)
    {
        var columns = table.Columns.Length;
        var values = Enumerable.Range(0, rows).Select(row =>
            "(" + string.Join(", ", Enumerable.Range(1, columns).Select(column => "?" + (row * columns + column))) + ")");
        return $"INSERT OR ROLLBACK INTO {table.Table} ({table.ColumnList}) VALUES {string.Join(", ", values)} {table.Conflict}";
    }

    /// <summary>
    /// One of the projector's INSERT statements, prepared once on its connection and bound by position
    /// through SQLite's own API. Microsoft.Data.Sqlite binds every parameter by name, and SQLite finds a name by
    /// a linear search of the statement's parameters, so binding a 16-row statement cost more than the inserts
    /// themselves (bench/RESULTS.md). It runs inside the transaction the connection has open.
    /// </summary>
    private sealed class RowStatement(SqliteConnection connection, string sql) : IDisposable
    {
        private readonly SQLitePCL.sqlite3_stmt statement = Prepare(connection, sql);

        private static SQLitePCL.sqlite3_stmt Prepare(SqliteConnection connection, string sql)
        {
            var result = SQLitePCL.raw.sqlite3_prepare_v2(connection.Handle, sql, out var statement);
            SqliteException.ThrowExceptionForRC(result, connection.Handle);
            return statement;
        }

        public void Run(List<object?[]> rows, int first, int count)
        {
            try
            {
                var index = 1;
                for (var row = first; row < first + count; row++)
                {
                    foreach (var value in rows[row]) Bind(index++, value);
                }
                var result = SQLitePCL.raw.sqlite3_step(statement);
                if (result != SQLitePCL.raw.SQLITE_DONE) SqliteException.ThrowExceptionForRC(result, connection.Handle);
            }
            finally
            {
                SQLitePCL.raw.sqlite3_reset(statement);
            }
        }

        private void Bind(int index, object? value)
        {
            var result = value switch
            {
                null => SQLitePCL.raw.sqlite3_bind_null(statement, index),
                long number => SQLitePCL.raw.sqlite3_bind_int64(statement, index, number),
                string text => SQLitePCL.raw.sqlite3_bind_text16(statement, index, text),
                _ => throw new InvalidOperationException($"A row value of type {value.GetType().Name} has no column type."),
            };
            if (result != SQLitePCL.raw.SQLITE_OK) SqliteException.ThrowExceptionForRC(result, connection.Handle);
        }

        public void Dispose() => statement.Dispose();
    }

    /// <summary>
    /// A thread that writes journaled batches into the tables, everything gathered in one transaction, and tells
    /// readers how far the tables have got.
    /// </summary>
    /// <remarks>
    /// It lets batches gather before it writes them, because what a transaction costs is the pages it dirties, not
    /// its rows: a consumption adds an entry to three indexes ordered by organization, so with a thousand busy
    /// organizations each consumption dirties pages of its own unless the transaction holds many of each
    /// organization's, and at one client every request was a transaction. Written a batch or two at a time, half
    /// of T2's load wrote 57 KB to the disk per consumption (measured). Under T2's load, gathered 50 ms the server
    /// wrote 34-39 KB per consumption, 200 ms 20-23 KB, 500 ms 13-15 KB, and T2 answered 4,500-6,000, 7,200-7,700
    /// and 7,900-9,300 a second (two rounds of the three in turn); but at the same paced load the answers' p99 was
    /// about 19, 25 and 29 ms (bench/RESULTS.md): the larger transactions compete with the journal's syncs for the
    /// disk. 200 ms takes most of the gain for part of the tail. An answer never waits for the gathering, and a
    /// read of the tables ends it.
    /// </remarks>
    private sealed class Projector : IDisposable
    {
        /// <summary>Rows (of every table) the projector writes in one transaction at most; it writes at once when this many wait.</summary>
        public const int RowsPerTransactionMax = 65_536;

        /// <summary>
        /// Rows journaled and not yet written into the tables (queued, or in the projector's transaction), at most:
        /// while this many wait, the writer waits before answering more, which bounds the memory (a row is a few
        /// hundred bytes to a kilobyte) and a read's wait, to about two transactions. Counted in rows, not batches,
        /// since a batch may hold one command or thousands. (Bounded at 4,096 batches, the T6 store's projector fell
        /// seconds behind under T2's load and the server's memory grew to 574 MiB; at 128 batches, about a third of
        /// a second of T2, the projector's gathering ended at half of that.)
        /// </summary>
        public const int UnwrittenRowsMax = 2 * RowsPerTransactionMax;

        /// <summary>Batches queued at most, whatever their rows: the channel's own bound, which the rows' bound keeps far off.</summary>
        public const int QueueCapacity = 16_384;

        /// <summary>
        /// How long batches gather before the projector writes them, unless a read of the tables is waiting,
        /// <see cref="RowsPerTransactionMax"/> rows or half of <see cref="QueueCapacity"/> batches wait, or the store closes.
        /// </summary>
        public static readonly TimeSpan GatherTime = TimeSpan.FromMilliseconds(200);

        /// <summary>How long the projector waits before it tries a transaction again after a transient failure.</summary>
        private static readonly TimeSpan RetryDelay = TimeSpan.FromSeconds(1);

        /// <summary>Failures that a later try may not meet: the database busy or locked, the disk full, an I/O error.</summary>
        private static bool IsTransient(SqliteException error) =>
            (error.SqliteErrorCode & 0xFF) is SQLitePCL.raw.SQLITE_BUSY or SQLitePCL.raw.SQLITE_LOCKED or SQLitePCL.raw.SQLITE_FULL or SQLitePCL.raw.SQLITE_IOERR;

        private readonly Channel<JournaledBatch> queue = Channel.CreateBounded<JournaledBatch>(
            new BoundedChannelOptions(QueueCapacity) { SingleReader = true, SingleWriter = true, FullMode = BoundedChannelFullMode.Wait });
        private readonly int unwrittenRowsMax;
        private readonly TableWriter writer;
        private readonly WalCheckpointer checkpointer;
        private readonly Thread thread;
        private long projectedThrough;
        private long durableThrough;
        private TaskCompletionSource advanced = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private volatile Exception? failure;
        private volatile bool stopping;
        // Rows queued and not yet taken by the projector; rows queued or being written; a reader waiting for the
        // tables; and the event that ends the projector's gathering early for the first or the third, or for the
        // store's closing.
        private long queuedRows;
        private long unwrittenRows;
        private volatile bool readerWaiting;
        private readonly ManualResetEventSlim writeNow = new(false);

        public Projector(TableWriter writer, WalCheckpointer checkpointer, long projectedThrough, int unwrittenRowsMax)
        {
            this.unwrittenRowsMax = unwrittenRowsMax;
            this.writer = writer;
            this.checkpointer = checkpointer;
            this.projectedThrough = projectedThrough;
            durableThrough = projectedThrough;
            thread = new Thread(Run) { IsBackground = true, Name = "Tally projector" };
            thread.Start();
        }

        public long ProjectedThrough => Volatile.Read(ref projectedThrough);

        public long UnwrittenRows => Volatile.Read(ref unwrittenRows);

        /// <summary>The last batch the tables hold durably (written by a synced commit): the journal may forget up to it.</summary>
        public long DurableThrough => Volatile.Read(ref durableThrough);

        public void ThrowIfStopped()
        {
            if (failure is { } error) throw new InvalidOperationException("The store stopped writing its journal into its tables.", error);
        }

        /// <summary>
        /// Queues a journaled batch, waiting while its limit of rows (<see cref="UnwrittenRowsMax"/>) or of batches wait;
        /// once the projector has stopped, does nothing.
        /// </summary>
        public async Task TryEnqueueAsync(JournaledBatch batch, CancellationToken cancellationToken)
        {
            while (failure is null)
            {
                // Taken before the count is read, so that a transaction that ends after the read completes it.
                var signal = Volatile.Read(ref advanced);
                if (UnwrittenRows < unwrittenRowsMax) break;
                await signal.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
            }
            try
            {
                await queue.Writer.WriteAsync(batch, cancellationToken);
            }
            catch (ChannelClosedException) when (failure is not null)
            {
                // The batch stays in the journal; the next start writes it into the tables.
                return;
            }
            Interlocked.Add(ref queuedRows, batch.RowCount);
            Interlocked.Add(ref unwrittenRows, batch.RowCount);
            if (EnoughQueued) writeNow.Set();
        }

        /// <summary>Enough waits for a transaction of its own: the most rows one may write, or half the queue's batches.</summary>
        private bool EnoughQueued => Volatile.Read(ref queuedRows) >= RowsPerTransactionMax || queue.Reader.Count >= QueueCapacity / 2;

        /// <summary>Returns once the tables hold every batch through <paramref name="sequence"/>.</summary>
        public async Task WaitForAsync(long sequence, CancellationToken cancellationToken)
        {
            while (true)
            {
                var signal = Volatile.Read(ref advanced);
                if (ProjectedThrough >= sequence) return;
                ThrowIfStopped();
                // Asked again after each transaction: the batch may have reached the queue only after the last one began.
                readerWaiting = true;
                writeNow.Set();
                await signal.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
            }
        }

        private void Run()
        {
            var batches = new List<JournaledBatch>();
            while (queue.Reader.WaitToReadAsync().AsTask().GetAwaiter().GetResult())
            {
                Gather();
                var rows = 0;
                while (rows < RowsPerTransactionMax && queue.Reader.TryRead(out var batch))
                {
                    batches.Add(batch);
                    rows += batch.RowCount;
                }
                Interlocked.Add(ref queuedRows, -rows);
                // Most commits are not synced: the journal made their batches durable already. One in
                // SyncedCommitEvery batches is, so that the journal can forget what the tables hold.
                var last = batches[^1].Sequence;
                var durable = last - DurableThrough >= SyncedCommitEvery;
                while (true)
                {
                    try
                    {
                        writer.Write(batches, last, durable);
                        checkpointer.Committed(writer.Connection);
                        break;
                    }
                    catch (SqliteException error) when (IsTransient(error) && !stopping)
                    {
                        // The database is locked by someone else, the disk is full, or an I/O failed: the batches
                        // wait (and, the queue filling, so does the writer) until a try succeeds.
                        Thread.Sleep(RetryDelay);
                    }
                    catch (Exception error)
                    {
                        // A batch the writer decided that the tables refuse is a defect: stop here, keep the journal,
                        // and fail every later batch and read, rather than answer from tables that lack an answered
                        // batch. The next start tries the journal again, and refuses to serve while it fails. (A
                        // transient failure while the store closes ends here too: the next start writes the batches.)
                        failure = error;
                        queue.Writer.TryComplete(error);
                        Interlocked.Exchange(ref advanced, new(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
                        return;
                    }
                }
                if (durable) Volatile.Write(ref durableThrough, last);
                Volatile.Write(ref projectedThrough, last);
                Interlocked.Add(ref unwrittenRows, -rows);
                batches.Clear();
                Interlocked.Exchange(ref advanced, new(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
            }
        }

        /// <summary>Waits, with a batch queued, until the gathering time is up or something asks for the tables now.</summary>
        private void Gather()
        {
            var until = Environment.TickCount64 + (long)GatherTime.TotalMilliseconds;
            while (!readerWaiting && !stopping && !EnoughQueued)
            {
                var left = until - Environment.TickCount64;
                if (left <= 0) break;
                writeNow.Wait(TimeSpan.FromMilliseconds(left));
                writeNow.Reset();
            }
            // Cleared before the queue is read: a reader that asks from here on asks for the next transaction.
            readerWaiting = false;
        }

        public void Dispose()
        {
            stopping = true;
            writeNow.Set();
            queue.Writer.TryComplete();
            thread.Join();
            writer.Dispose();
            writeNow.Dispose();
        }
    }

    /// <summary>
    /// The idempotency records, consumptions and holds of batches journaled but perhaps not yet in the tables, for
    /// the writer's lookups; used by the writer alone, so without locks.
    /// </summary>
    private sealed class PendingBatches
    {
        private readonly Dictionary<(string OrganizationId, string Key), (long Sequence, IdempotencyRecord Record)> idempotency = [];
        private readonly Dictionary<string, (long Sequence, ConsumptionRecord Record)> consumptions = new(StringComparer.Ordinal);
        private readonly Dictionary<string, (long Sequence, HoldRow Row)> holds = new(StringComparer.Ordinal);
        private readonly Queue<(long Sequence, (string, string)[] Keys, string[] Consumptions, string[] Holds)> batches = new();

        public void Add(long sequence, BatchChanges changes)
        {
            foreach (var (key, record) in changes.Idempotency) idempotency[key] = (sequence, record);
            // A copy: the batch's own record may still be changed by whoever holds the changes.
            foreach (var (id, consumption) in changes.Consumptions) consumptions[id] = (sequence, consumption.Copy());
            foreach (var (id, hold) in changes.Holds) holds[id] = (sequence, hold);
            batches.Enqueue((sequence, [.. changes.Idempotency.Keys], [.. changes.Consumptions.Keys], [.. changes.Holds.Keys]));
        }

        /// <summary>Forgets the batches through <paramref name="projectedThrough"/>, which the tables hold now.</summary>
        public void Forget(long projectedThrough)
        {
            while (batches.TryPeek(out var batch) && batch.Sequence <= projectedThrough)
            {
                batches.Dequeue();
                // An entry a later batch rewrote stays, with that batch's number.
                foreach (var key in batch.Keys) Remove(idempotency, key, batch.Sequence);
                foreach (var id in batch.Consumptions) Remove(consumptions, id, batch.Sequence);
                foreach (var id in batch.Holds) Remove(holds, id, batch.Sequence);
            }
        }

        /// <summary>The value of the batch being journaled, if it has one, else the newest pending one, else null.</summary>
        private static TValue? Newest<TKey, TValue>(Dictionary<TKey, TValue>? journaling, Dictionary<TKey, (long Sequence, TValue Value)> pending, TKey key)
            where TKey : notnull where TValue : class =>
            journaling?.GetValueOrDefault(key) ?? (pending.TryGetValue(key, out var entry) ? entry.Value : null);

        private static void Remove<TKey, TValue>(Dictionary<TKey, (long Sequence, TValue Value)> entries, TKey key, long sequence) where TKey : notnull
        {
            if (entries.TryGetValue(key, out var entry) && entry.Sequence == sequence) entries.Remove(key);
        }

        /// <summary>
        /// What the request names that is pending, and in <paramref name="notPending"/> the rest, for the tables. The
        /// batch still being journaled, if given, is newer than every pending one, so it is asked first.
        /// </summary>
        public BatchLookups Find(BatchLookupRequest request, BatchChanges? journaling, out BatchLookupRequest notPending)
        {
            var found = new BatchLookups();
            if (batches.Count == 0 && journaling is null)
            {
                notPending = request;
                return found;
            }
            var keys = new List<(string, string)>();
            foreach (var key in request.IdempotencyKeys)
            {
                if (Newest(journaling?.Idempotency, idempotency, key) is { } record) found.Idempotency[key] = record;
                else keys.Add(key);
            }
            var consumptionIds = new List<(string, string)>();
            foreach (var (organizationId, id) in request.Consumptions)
            {
                var record = Newest(journaling?.Consumptions, consumptions, id);
                // A copy: the writer changes the refunded total of the record it is given.
                if (record?.OrganizationId == organizationId) found.Consumptions[id] = record.Copy();
                else consumptionIds.Add((organizationId, id));
            }
            var holdIds = new List<(string, string)>();
            foreach (var (organizationId, id) in request.Holds)
            {
                var row = Newest(journaling?.Holds, holds, id);
                if (row?.OrganizationId == organizationId) found.Holds[id] = row;
                else holdIds.Add((organizationId, id));
            }
            notPending = request with { IdempotencyKeys = keys, Consumptions = consumptionIds, Holds = holdIds };
            return found;
        }
    }
}
