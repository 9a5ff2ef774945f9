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
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        foreach (var (name, value) in parameters) command.Parameters.AddWithValue(name, value);
        return command.ExecuteNonQuery();
    }

    public static long Scalar(string databasePath, string sql, params (string Name, object Value)[] parameters)
    {
        using var connection = Open(databasePath);
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        foreach (var (name, value) in parameters) command.Parameters.AddWithValue(name, value);
        return Convert.ToInt64(command.ExecuteScalar());
    }
}
