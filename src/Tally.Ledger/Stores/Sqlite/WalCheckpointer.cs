using Microsoft.Data.Sqlite;
using SQLitePCL;

namespace Tally.Ledger.Stores.Sqlite;

/// <summary>
/// One log's checkpoints so far, for metrics: all that ran, those the writer ran itself because the log had reached
/// its limit (each one a pause of the writer), and those SQLite refused (their pages wait for the next).
/// </summary>
public readonly record struct CheckpointCounts(long Completed, long ByWriter, long Failed);

/// <summary>
/// Copies the write-ahead log into the database file on its own connection and thread, so that the writer's
/// commits do not wait for checkpoints. With SQLite's automatic checkpoints the committing writer copied about
/// a thousand pages and synced the database file every few commits (14 ms on average on the bench machine), and
/// every request queued behind that commit waited too: it was most of the p99 at half load (bench/RESULTS.md).
/// </summary>
/// <remarks>
/// The store has one per database: the journal's writer is the engine's writer, and tally.db's is the projector
/// (SqliteLedgerStore). Durability does not change: a checkpoint syncs the log, copies committed pages into the
/// database file and syncs it before the log may be reused.
/// SQLite starts the log over only when a transaction begins on a log wholly copied and read by no one. Under load
/// the writer keeps appending while a background checkpoint copies, so that moment never comes and the log would
/// grow without end (when the writer pauses, it does come, and the log restarts early). So when the log reaches
/// <see cref="LogPagesMax"/> pages the writer checkpoints itself, between two transactions, which copies what is
/// left; its next transaction then writes the log from the start again, unless a reader still holds an older
/// snapshot of it (a long `tally backup`), in which case the log grows until the next try after that reader ends.
/// </remarks>
internal sealed class WalCheckpointer : IDisposable
{
    /// <summary>Pages written to the log before a background checkpoint is due: SQLite's own default.</summary>
    public const int PagesPerCheckpoint = 1_000;

    /// <summary>
    /// The log's size (in 4 KiB pages, 128 MiB) at which the writer checkpoints itself so that the log starts over.
    /// Larger means fewer of those pauses but a longer log to read back after a crash.
    /// </summary>
    public const int LogPagesMax = 32_768;

    private readonly SqliteConnection connection;
    private readonly Thread thread;
    private readonly AutoResetEvent due = new(false);
    // One checkpoint at a time, the writer's or the background thread's.
    private readonly Lock running = new();
    private readonly int logPagesMax;
    private long pagesSinceReport;
    private long reportedLogPages;
    private volatile bool stopping;

    public WalCheckpointer(string connectionString, int logPagesMax = LogPagesMax)
    {
        this.logPagesMax = logPagesMax;
        connection = new SqliteConnection(connectionString);
        connection.Open();
        using (var command = connection.CreateCommand())
        {
            // The checkpoint's sync of the database file follows this connection's setting.
            command.CommandText = "PRAGMA synchronous=FULL";
            command.ExecuteNonQuery();
        }
        thread = new Thread(Run) { IsBackground = true, Name = "Tally WAL checkpointer" };
        thread.Start();
    }

    // Counted under the running lock, read by metrics and tests from other threads.
    private long checkpoints;
    private long writerCheckpoints;
    private long failedCheckpoints;

    // Written by the writer's thread only.
    private long largestCommitPages;

    /// <summary>
    /// The most pages one commit appended to the log so far. While no reader holds the log, its file never holds more
    /// than the limit and one such commit: the commit that reaches the limit is followed by the writer's checkpoint
    /// (tests check the bound).
    /// </summary>
    internal long LargestCommitPages => Volatile.Read(ref largestCommitPages);

    /// <summary>The checkpoints so far: completed by either side, run by the writer, refused.</summary>
    public CheckpointCounts Counts =>
        new(Interlocked.Read(ref checkpoints), Interlocked.Read(ref writerCheckpoints), Interlocked.Read(ref failedCheckpoints));

    /// <summary>
    /// Called by the writer after each commit, on the write connection: counts the pages the commit appended to
    /// the log, wakes the background checkpointer when enough are waiting, and checkpoints here when the log is full.
    /// </summary>
    public void Committed(SqliteConnection writeConnection)
    {
        raw.sqlite3_db_status(writeConnection.Handle, raw.SQLITE_DBSTATUS_CACHE_WRITE, out var written, out _, 1);
        if (written > largestCommitPages) Volatile.Write(ref largestCommitPages, written);
        var pending = Interlocked.Add(ref pagesSinceReport, written);
        if (Volatile.Read(ref reportedLogPages) + pending >= logPagesMax)
        {
            lock (running)
            {
                Interlocked.Increment(ref writerCheckpoints);
                // Copied entirely with no writer beside it: the writer's next transaction starts the log over. (If a
                // reader prevents that, the background checkpoint's next report gives the real size again.)
                if (Checkpoint(writeConnection) is var (log, copied)) Volatile.Write(ref reportedLogPages, log == copied ? 0 : log);
            }
        }
        else if (pending >= PagesPerCheckpoint)
        {
            due.Set();
        }
    }

    private void Run()
    {
        while (true)
        {
            due.WaitOne();
            if (stopping) return;
            lock (running)
            {
                if (Volatile.Read(ref pagesSinceReport) < PagesPerCheckpoint) continue;
                if (Checkpoint(connection) is var (log, _)) Volatile.Write(ref reportedLogPages, log);
            }
        }
    }

    /// <summary>
    /// A passive checkpoint: copies what it can without waiting for the writer or readers, and gives the log's size
    /// and the pages copied, in pages. The pages counted so far are covered by that size (pages appended meanwhile
    /// may be counted twice, which only brings the writer's checkpoint a little early). Like SQLite's automatic
    /// checkpoints, a failed one is not an error of the commit before it, which is durable already: it gives null,
    /// its pages stay counted, and the next checkpoint copies them.
    /// </summary>
    private (int Log, int Copied)? Checkpoint(SqliteConnection on)
    {
        var counted = Interlocked.Exchange(ref pagesSinceReport, 0);
        var result = raw.sqlite3_wal_checkpoint_v2(on.Handle, "main", raw.SQLITE_CHECKPOINT_PASSIVE, out var log, out var copied);
        if (result != raw.SQLITE_OK)
        {
            Interlocked.Add(ref pagesSinceReport, counted);
            Interlocked.Increment(ref failedCheckpoints);
            return null;
        }
        Interlocked.Increment(ref checkpoints);
        return (log, copied);
    }

    public void Dispose()
    {
        stopping = true;
        due.Set();
        thread.Join();
        due.Dispose();
        connection.Dispose();
    }
}
