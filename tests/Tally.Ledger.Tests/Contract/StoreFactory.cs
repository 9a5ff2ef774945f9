using Tally.Ledger.Stores;
using Tally.Ledger.Stores.Sqlite;

namespace Tally.Ledger.Tests.Contract;

/// <summary>Makes fresh, empty stores for the contract suite; one implementation per store.</summary>
public interface IStoreFactory
{
    string Name { get; }

    /// <summary>A new empty store; calling <see cref="Reopen"/> with the same name opens the same data again (a restart).</summary>
    ILedgerStore Create(string name);

    ILedgerStore Reopen(string name);
}

public sealed class SqliteStoreFactory : IStoreFactory, IDisposable
{
    private readonly string root = Path.Combine(Path.GetTempPath(), "tally-tests", Guid.NewGuid().ToString("N"));

    public string Name => "sqlite";

    public ILedgerStore Create(string name) => new SqliteLedgerStore(Path.Combine(root, name));

    public ILedgerStore Reopen(string name) => new SqliteLedgerStore(Path.Combine(root, name));

    public void Dispose()
    {
        try { Directory.Delete(root, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
