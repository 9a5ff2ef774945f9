using System.Text;
using Tally.Ledger.Engine;
using Tally.Ledger.Stores.Sqlite;

// The crash test's victim: runs the engine on a data directory under load and prints each consumption
// only once its await has returned success, so every printed line is a promise that the change is durable.
// The test kills this process with SIGKILL at a random moment and then checks that every promise was kept.
//
// usage: Tally.Ledger.CrashWorker <data directory> <organization id> <key prefix>
// prints "ready" once the engine runs, then "ack <idempotency key> <consumption id>" per acknowledged consumption.

const int Callers = 64;
// A bound on the worker's life, so that a test that fails to kill it cannot leave it running.
var lifetimeMax = TimeSpan.FromSeconds(60);

if (args.Length != 3)
{
    Console.Error.WriteLine("usage: Tally.Ledger.CrashWorker <data directory> <organization id> <key prefix>");
    return 64;
}
var (dataDirectory, organizationId, prefix) = (args[0], args[1], args[2]);

var output = Console.OpenStandardOutput();
var gate = new Lock();
void Print(string line)
{
    // One write per line, below the pipe's atomic size, flushed at once: a kill can lose a line, never tear one.
    var bytes = Encoding.ASCII.GetBytes(line + "\n");
    lock (gate)
    {
        output.Write(bytes);
        output.Flush();
    }
}

var engine = new LedgerEngine(new SqliteLedgerStore(dataDirectory), TimeProvider.System);
await engine.StartAsync();
Print("ready");

using var lifetime = new CancellationTokenSource(lifetimeMax);
var failures = 0;
await Task.WhenAll(Enumerable.Range(0, Callers).Select(caller => Task.Run(async () =>
{
    for (var sequence = 0; !lifetime.IsCancellationRequested; sequence++)
    {
        var key = $"{prefix}-{caller}-{sequence}";
        var outcome = await engine.ConsumeAsync(new ConsumeRequest(organizationId, 1, key));
        if (!outcome.Succeeded)
        {
            Console.Error.WriteLine($"{key}: {outcome.Error!.Code} {outcome.Error.Message}");
            Interlocked.Increment(ref failures);
            return;
        }
        Print($"ack {key} {outcome.Value!.Id}");
    }
})));
await engine.DisposeAsync();
return failures == 0 ? 0 : 1;
