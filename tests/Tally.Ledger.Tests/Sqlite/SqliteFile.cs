using Microsoft.Data.Sqlite;
using Tally.Ledger.Stores.Sqlite;
using Tally.Ledger.Tests.Contract;

namespace Tally.Ledger.Tests.Sqlite;

/// <summary>Direct access to a SQLite store's file, behind the engine's back, as a bad disk or a careless operator would.</summary>
internal static class SqliteFile
{
    /// <summary>The store's database file, once its tables hold every batch answered so far.</summary>
    public static string PathOf(LedgerHarness ledger)
    {
        var store = (SqliteLedgerStore)ledger.Engine.Store;
        store.WaitForTablesAsync().GetAwaiter().GetResult();
        return store.DatabasePath;
    }

    public static SqliteConnection Open(string databasePath)
    {
        var connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = databasePath, Pooling = false }.ToString());
        connection.Open();
        return connection;
    }

    public static long Execute(string databasePath, string sql, params (string Name, object Value)[] parameters)
    {
        using var connection = Open(databasePath);
        return Execute(connection, sql, parameters);
    }

    /// <summary>Runs a statement on a connection the caller keeps open (one that holds a lock, say).</summary>
    public static long Execute(SqliteConnection connection, string sql, params (string Name, object Value)[] parameters)
    {
        using var command = Command(connection, sql, parameters);
        return command.ExecuteNonQuery();
    }

    public static long Scalar(string databasePath, string sql, params (string Name, object Value)[] parameters)
    {
        using var connection = Open(databasePath);
        using var command = Command(connection, sql, parameters);
        return Convert.ToInt64(command.ExecuteScalar());
    }

    private static SqliteCommand Command(SqliteConnection connection, string sql, (string Name, object Value)[] parameters)
    {
        var command = connection.CreateCommand();
        command.CommandText = sql;
        foreach (var (name, value) in parameters) command.Parameters.AddWithValue(name, value);
        return command;
    }
}
