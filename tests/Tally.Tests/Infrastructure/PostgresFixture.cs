using Npgsql;
using Tally.Ledger.Tests.Contract;

namespace Tally.Tests.Infrastructure;

/// <summary>
/// A throwaway PostgreSQL server (the ledger tests' <see cref="PostgresServer"/>: initdb, started as the
/// `postgres` user on a free port) for tests that run `tally serve --store postgres`. It starts on the first
/// database asked for, so a class whose PostgreSQL tests are skipped never starts it.
/// </summary>
public sealed class PostgresFixture : IDisposable
{
    private readonly Lazy<PostgresServer> server = new(PostgresServer.Start, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>Creates an empty database and returns its connection string; `tally serve` migrates it on start.</summary>
    public string CreateDatabase(string name)
    {
        using (var connection = new NpgsqlConnection(server.Value.ConnectionString("postgres")))
        {
            connection.Open();
            using var command = new NpgsqlCommand($"CREATE DATABASE \"{name}\"", connection);
            command.ExecuteNonQuery();
        }
        return server.Value.ConnectionString(name);
    }

    public void Dispose()
    {
        if (server.IsValueCreated) server.Value.Dispose();
    }
}

/// <summary>A test that needs PostgreSQL: it runs (and fails with installation advice without it) unless TALLY_SKIP_POSTGRES_TESTS=1.</summary>
public sealed class PostgresFactAttribute : FactAttribute
{
    public PostgresFactAttribute()
    {
        if (PostgresServer.SkipRequested) Skip = $"{PostgresServer.SkipVariable}=1: PostgreSQL tests skipped (install PostgreSQL, e.g. apt-get install postgresql, to run them)";
    }
}
