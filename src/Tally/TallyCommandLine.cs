using System.CommandLine;
using System.Text.Json;
using Microsoft.Data.Sqlite;
using Tally.Hosting;
using Tally.Ledger.Engine;
using Tally.Ledger.Stores.Sqlite;

namespace Tally;

/// <summary>Exit codes of the `tally` command, named so scripts can rely on them.</summary>
public static class ExitCodes
{
    public const int Success = 0;
    public const int Failure = 1;
    public const int UsageError = 2;
    public const int VerifyFoundDifferences = 3;
}

/// <summary>The `tally` command: `serve` runs the server, `verify` checks the ledger.</summary>
public static class TallyCommandLine
{
    public static RootCommand Build()
    {
        var dataDirectory = new Option<string?>("--data-dir") { Description = "Folder of the embedded SQLite store (default ./tally-data)." };
        var urls = new Option<string?>("--urls") { Description = $"Addresses to listen on (default {TallyOptions.DefaultUrls})." };
        var store = new Option<string?>("--store") { Description = "sqlite (default) or postgres." };
        var connection = new Option<string?>("--connection") { Description = "PostgreSQL connection string, with --store postgres." };
        var json = new Option<bool>("--json") { Description = "Print JSON for machines instead of text." };

        var serve = new Command("serve", "Runs the Tally HTTP server.") { dataDirectory, urls, store, connection };
        serve.SetAction(async (parse, cancellationToken) =>
        {
            var options = Options(parse, dataDirectory, urls, store, connection);
            // Checked here, not where the settings are read: the other commands use neither.
            TallyOptions.CheckUrls(options.Urls, options.UrlsSetting);
            TallyOptions.CheckOperatorKey(options);
            var app = TallyServer.Build(options);
            await app.RunAsync();
            return ExitCodes.Success;
        });

        var verify = new Command("verify", "Recomputes every balance from the ledger entries and reports any difference.") { dataDirectory, store, connection, json };
        verify.SetAction(async (parse, cancellationToken) =>
        {
            var options = Options(parse, dataDirectory, urls, store, connection);
            // A mistyped folder would otherwise be a new, empty store, and verify would call it clean.
            if (options.Store == StoreKind.Sqlite && !File.Exists(Path.Combine(options.DataDirectory, SqliteLedgerStore.FileName)))
            {
                Console.Error.WriteLine($"No Tally store at {Path.GetFullPath(options.DataDirectory)} (it has no {SqliteLedgerStore.FileName}); give the store's folder with --data-dir.");
                return ExitCodes.Failure;
            }
            await using var engine = new LedgerEngine(TallyServer.CreateStore(options), TimeProvider.System);
            await engine.StartAsync(cancellationToken);
            var report = await engine.Store.VerifyAsync(cancellationToken);
            if (parse.GetValue(json))
            {
                Console.WriteLine(JsonSerializer.Serialize(report, TallyJson.Default.VerifyReport));
            }
            else
            {
                Console.WriteLine(report.Clean ? "Ledger verified: clean." : $"Ledger verify found {report.DifferencesFound} differences:");
                foreach (var difference in report.Differences) Console.WriteLine("  " + difference);
                if (report.DifferencesFound > report.Differences.Count) Console.WriteLine($"  … and {report.DifferencesFound - report.Differences.Count} more.");
                Console.WriteLine($"{report.OrganizationsChecked} organizations, {report.GrantsChecked} grants, {report.EntriesChecked} entries checked.");
            }
            return report.Clean ? ExitCodes.Success : ExitCodes.VerifyFoundDifferences;
        });

        var target = new Option<string>("--to") { Description = "The backup file to create.", Required = true };
        var backup = new Command("backup", "Copies the SQLite store online into one consistent file (restore: docs/operations.md).") { dataDirectory, target };
        backup.SetAction(async (parse, cancellationToken) =>
        {
            var options = Options(parse, dataDirectory, urls, store, connection);
            if (options.Store != StoreKind.Sqlite)
            {
                Console.Error.WriteLine("tally backup copies the SQLite store; back PostgreSQL up with pg_dump or pg_basebackup.");
                return ExitCodes.UsageError;
            }
            try
            {
                await SqliteLedgerStore.BackupAsync(options.DataDirectory, parse.GetValue(target)!, cancellationToken);
            }
            catch (Exception exception) when (exception is IOException or UnauthorizedAccessException or SqliteException)
            {
                Console.Error.WriteLine(exception.Message);
                return ExitCodes.Failure;
            }
            Console.WriteLine($"Backed up {Path.Combine(options.DataDirectory, SqliteLedgerStore.FileName)} to {Path.GetFullPath(parse.GetValue(target)!)}.");
            return ExitCodes.Success;
        });

        var organizations = new Option<int>("--organizations") { Description = "Organizations to create.", DefaultValueFactory = _ => 1_000 };
        var entries = new Option<int>("--entries-per-organization") { Description = "Ledger entries per organization (one grant, the rest consumptions).", DefaultValueFactory = _ => 10 };
        var keysFile = new Option<string>("--keys-file")
            { Description = "Where to write keys (pk:sk per line, live secrets) for load tests; a file there is replaced.", DefaultValueFactory = _ => "keys.txt" };
        var keysCount = new Option<int>("--keys") { Description = "How many keys to write to the keys file.", DefaultValueFactory = _ => 1_000 };
        var seed = new Command("seed",
                "Fills an empty SQLite store with organizations and ledger entries, for the scale benchmark. It writes without a journal: " +
                "if it is stopped, delete the folder and seed again.")
            { dataDirectory, organizations, entries, keysFile, keysCount };
        seed.SetAction(async (parse, cancellationToken) =>
        {
            var options = Options(parse, dataDirectory, urls, store, connection);
            if (parse.GetValue(organizations) < 1 || parse.GetValue(entries) < 1 || parse.GetValue(keysCount) < 0)
            {
                throw new ArgumentException("--organizations and --entries-per-organization must be at least 1, and --keys at least 0.");
            }
            if (Path.GetDirectoryName(Path.GetFullPath(parse.GetValue(keysFile)!)) is { } keysFolder && !Directory.Exists(keysFolder))
            {
                throw new ArgumentException($"--keys-file: the folder {keysFolder} does not exist.");
            }
            return await Seeding.Seeder.SeedAsync(options.DataDirectory, parse.GetValue(organizations), parse.GetValue(entries),
                parse.GetValue(keysFile)!, parse.GetValue(keysCount));
        });

        return new RootCommand("Tally: message credits for chatbot and AI-agent platforms.") { serve, verify, backup, seed };
    }

    /// <summary>Command-line options override `TALLY_*` variables, which override appsettings.json.</summary>
    private static TallyOptions Options(ParseResult parse, Option<string?> dataDirectory, Option<string?> urls, Option<string?> store, Option<string?> connection)
    {
        var settingsFile = Path.Combine(Directory.GetCurrentDirectory(), "appsettings.json");
        IConfiguration settings;
        try
        {
            settings = new ConfigurationBuilder().AddJsonFile(settingsFile, optional: true).Build();
        }
        catch (InvalidDataException exception)
        {
            throw new ArgumentException($"{settingsFile} is not valid JSON: {exception.InnerException?.Message ?? exception.Message}");
        }
        var options = TallyOptions.FromConfiguration(new ConfigurationBuilder().AddEnvironmentVariables("TALLY_").Build(), settings);
        return options with
        {
            DataDirectory = parse.GetValue(dataDirectory) ?? options.DataDirectory,
            Urls = parse.GetValue(urls) ?? options.Urls,
            UrlsSetting = parse.GetValue(urls) is null ? options.UrlsSetting : "--urls",
            Store = parse.GetValue(store) is { } storeText ? TallyOptions.ParseStore(storeText) : options.Store,
            Connection = parse.GetValue(connection) ?? options.Connection,
        };
    }
}
