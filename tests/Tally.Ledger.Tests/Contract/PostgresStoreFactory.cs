using System.Collections.Concurrent;
using Npgsql;
using Tally.Ledger.Stores;
using Tally.Ledger.Stores.Postgres;

namespace Tally.Ledger.Tests.Contract;

/// <summary>
/// One database per <see cref="Create"/> on a throwaway PostgreSQL server (<see cref="PostgresServer"/>);
/// <see cref="Reopen"/> connects to the same database again, as a restarted node or a second node would.
/// It is the fixture of the PostgreSQL collection, so one server serves every PostgreSQL test of the run: it
/// starts on the first <see cref="Create"/> (so skipped tests never need it) and is torn down with the collection.
/// Databases are copied from a template migrated once, so a store's own migration finds nothing to do;
/// <see cref="CreateEmpty"/> gives the tests of migrations themselves an empty database.
/// </summary>
public sealed class PostgresStoreFactory : IStoreFactory, IDisposable
{
    private const string TemplateDatabase = "tally_template";

    private readonly Lazy<PostgresServer> server = new(PostgresServer.Start, LazyThreadSafetyMode.ExecutionAndPublication);
    private readonly Lazy<string> template;
    private readonly ConcurrentDictionary<string, string> databases = new(StringComparer.Ordinal);

    public PostgresStoreFactory() => template = new(MigrateTemplate, LazyThreadSafetyMode.ExecutionAndPublication);

    public string Name => "postgres";

    public ILedgerStore Create(string name) => CreateDatabase(name, template.Value);

    /// <summary>A store on an empty database, for tests of the migrations.</summary>
    public ILedgerStore CreateEmpty(string name) => CreateDatabase(name, "template1");

    private PostgresLedgerStore CreateDatabase(string name, string templateDatabase)
    {
        var database = DatabaseName(name);
        if (!databases.TryAdd(name, database)) throw new InvalidOperationException($"The store {name} was already created.");
        Execute($"CREATE DATABASE \"{database}\" TEMPLATE \"{templateDatabase}\"");
        return new PostgresLedgerStore(ConnectionString(name));
    }

    private string MigrateTemplate()
    {
        Execute($"CREATE DATABASE \"{TemplateDatabase}\"");
        // Disposing the store closes its connections: PostgreSQL copies a template only when no one is connected to it.
        var store = new PostgresLedgerStore(server.Value.ConnectionString(TemplateDatabase));
        try
        {
            store.InitializeAsync(CancellationToken.None).GetAwaiter().GetResult();
        }
        finally
        {
            store.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
        return TemplateDatabase;
    }

    private void Execute(string sql)
    {
        using var connection = new NpgsqlConnection(server.Value.ConnectionString("postgres"));
        connection.Open();
        using var command = new NpgsqlCommand(sql, connection);
        command.ExecuteNonQuery();
    }

    public ILedgerStore Reopen(string name) => new PostgresLedgerStore(ConnectionString(name));

    /// <summary>The connection string of a store made by <see cref="Create"/>, for tests that look at the database directly.</summary>
    public string ConnectionString(string name) =>
        server.Value.ConnectionString(databases.TryGetValue(name, out var database) ? database : throw new InvalidOperationException($"No store {name} was created."));

    /// <summary>Store names become database names: lower-case letters, digits and underscores, within PostgreSQL's 63 bytes.</summary>
    private static string DatabaseName(string name)
    {
        var cleaned = new string(name.ToLowerInvariant().Where(character => char.IsAsciiLetterOrDigit(character) || character == '_').ToArray());
        if (cleaned.Length == 0 || cleaned.Length > 50) throw new ArgumentException($"Store name '{name}' does not make a database name.", nameof(name));
        return "tally_" + cleaned;
    }

    public void Dispose()
    {
        if (server.IsValueCreated) server.Value.Dispose();
    }
}

/// <summary>Every PostgreSQL test class joins this collection, so they share one server and run one after another.</summary>
[CollectionDefinition(Name)]
public sealed class PostgresCollection : ICollectionFixture<PostgresStoreFactory>
{
    public const string Name = "PostgreSQL";
}

/// <summary>The whole contract suite, unchanged, on PostgreSQL.</summary>
[RequiresPostgres]
[Collection(PostgresCollection.Name)]
public sealed class PostgresLedgerContract(PostgresStoreFactory factory) : LedgerContract(factory);
