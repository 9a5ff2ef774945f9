using System.Net;
using System.Net.Sockets;
using System.Text.Json.Nodes;
using Tally.Ledger.Engine;
using Tally.Ledger.Model;
using Tally.Ledger.Stores.Sqlite;
using Tally.Tests.Infrastructure;

namespace Tally.Tests;

/// <summary>
/// The `tally` commands other than a running server, as an operator runs them: the real executable in a process,
/// its exit code and what it prints. A store that cannot open, or an address in use, is a one-line message and exit
/// code 1, not a crash; `tally seed` fills an empty folder that then verifies clean, and refuses any folder it could
/// damage.
/// </summary>
public sealed class CommandLineTests : IDisposable
{
    private readonly string root = Path.Combine(Path.GetTempPath(), "tally-command-line-tests-" + Guid.NewGuid().ToString("N"));

    public CommandLineTests() => Directory.CreateDirectory(root);

    private string DataDirectory => Path.Combine(root, "data");

    [Fact]
    public async Task ServeOnAFolderAnotherStoreHoldsExitsWithOneLineThatSaysSoInsteadOfCrashing()
    {
        await using var holder = new SqliteLedgerStore(DataDirectory);
        await holder.InitializeAsync(CancellationToken.None);

        var (exitCode, output) = await TallyProcess.RunAsync(root, "serve", "--urls", "http://127.0.0.1:0", "--data-dir", DataDirectory);

        Assert.True(exitCode == ExitCodes.Failure, $"exit code {exitCode}:\n{output}");
        Assert.Contains($"Another Tally store is open on {DataDirectory}", output);
        Assert.DoesNotContain("Hosting failed to start", output);
        // An unhandled exception would abort the runtime (exit code 134) after printing this.
        Assert.DoesNotContain("Unhandled exception", output);
    }

    [Theory]
    [InlineData("http://localhots:5288")]
    [InlineData("http://256.1.1.1:5288")]
    [InlineData("https://127.0.0.1:5288")]
    [InlineData("http://127.0.0.1:5288/path")]
    [InlineData("http://127.0.0.1")]
    [InlineData("notaurl")]
    [InlineData("")]
    public async Task ServeRefusesAnAddressThatKestrelWouldTakeOtherwiseThanItReads(string urls)
    {
        // A host name other than localhost (a typo of an address) would listen on every interface; https has no
        // certificate; a path or a missing port is not what the operator meant either.
        var output = await AssertUsageErrorAsync("serve", "--urls", urls, "--data-dir", DataDirectory);

        Assert.StartsWith("--urls", output);
    }

    [Fact]
    public async Task CommandsOtherThanServeDoNotStopOnTheServersOperatorKeyOrAddress()
    {
        // A backup or verify run by a scheduler with the server's environment uses neither setting.
        var (exitCode, output) = await TallyProcess.RunAsync(root,
            new Dictionary<string, string> { ["TALLY_OPERATOR_KEY"] = "admin", ["TALLY_URLS"] = "http://localhots:5288" },
            "verify", "--data-dir", DataDirectory);

        Assert.True(exitCode == ExitCodes.Failure, $"exit code {exitCode}:\n{output}");
        Assert.StartsWith("No Tally store at", output);
    }

    [Fact]
    public async Task AnAddressFromTheEnvironmentThatIsNotValidIsRefusedUnderItsOwnName()
    {
        var (exitCode, output) = await TallyProcess.RunAsync(root,
            new Dictionary<string, string> { ["TALLY_OPERATOR_KEY"] = TallyApi.OperatorKey, ["TALLY_URLS"] = "http://localhots:5288" },
            "serve", "--data-dir", DataDirectory);

        Assert.True(exitCode == ExitCodes.UsageError, $"exit code {exitCode}:\n{output}");
        Assert.StartsWith("TALLY_URLS: 'http://localhots:5288': the host must be", output);
        Assert.False(Directory.Exists(DataDirectory), "refused before the store opened");
    }

    [Fact]
    public async Task ASettingThatIsNotValidIsRefusedRatherThanReplacedByItsDefault()
    {
        await File.WriteAllTextAsync(Path.Combine(root, "appsettings.json"), """{"Tally": {"RateLimitPerSecond": "lots"}}""");

        var output = await AssertUsageErrorAsync("serve", "--urls", "http://127.0.0.1:0", "--data-dir", DataDirectory);

        Assert.Contains("Tally:RateLimitPerSecond must be a whole number of at least 1; it is 'lots'.", output);
    }

    [Theory]
    [InlineData("admin", "must be 16 to 256 characters long; it is 5.")]
    [InlineData("a-long-enough-key with-a-space", "holds white space or a control character")]
    public async Task ServeRefusesAnOperatorKeyTooShortToBeSafeOrThatNoHeaderCouldCarry(string key, string expected)
    {
        var (exitCode, output) = await TallyProcess.RunAsync(root, new Dictionary<string, string> { ["TALLY_OPERATOR_KEY"] = key },
            "serve", "--urls", "http://127.0.0.1:0", "--data-dir", DataDirectory);

        Assert.True(exitCode == ExitCodes.UsageError, $"exit code {exitCode}:\n{output}");
        Assert.StartsWith("TALLY_OPERATOR_KEY ", output);
        Assert.Contains(expected, output);
        // The refusal names the setting and the key's length, never the key.
        Assert.DoesNotContain(key, output);
        Assert.False(Directory.Exists(DataDirectory), "refused before the store opened");
    }

    [Fact]
    public async Task AKeyAtTheTopOfTheSettingsFileIsNotTakenForTheTallySectionsOwn()
    {
        await using (var store = new SqliteLedgerStore(DataDirectory)) await store.InitializeAsync(CancellationToken.None);
        // TALLY_STORE is read as the key "STORE"; the file's top-level "Store" used to be read as if it were that variable.
        await File.WriteAllTextAsync(Path.Combine(root, "appsettings.json"), """{"Store": "not-a-store", "Tally": {}}""");

        var (exitCode, output) = await TallyProcess.RunAsync(root, "verify", "--data-dir", DataDirectory);

        Assert.True(exitCode == ExitCodes.Success, $"exit code {exitCode}:\n{output}");
    }

    [Fact]
    public async Task VerifyOfAFolderWithoutAStoreSaysSoAndCreatesNothing()
    {
        var mistyped = Path.Combine(root, "mistyped");

        var (exitCode, output) = await TallyProcess.RunAsync(root, "verify", "--data-dir", mistyped);

        // Before, it created an empty store there and reported it clean.
        Assert.True(exitCode == ExitCodes.Failure, $"exit code {exitCode}:\n{output}");
        Assert.Contains($"No Tally store at {mistyped}", output);
        Assert.False(Directory.Exists(mistyped));
    }

    [Fact]
    public async Task AFileThatIsNotADatabaseIsRefusedInOneLineByServeVerifyAndBackup()
    {
        Directory.CreateDirectory(DataDirectory);
        await File.WriteAllTextAsync(Path.Combine(DataDirectory, SqliteLedgerStore.FileName), "half of a copy");
        var backups = Directory.CreateDirectory(Path.Combine(root, "backups")).FullName;

        foreach (var arguments in new[]
        {
            new[] { "serve", "--urls", "http://127.0.0.1:0", "--data-dir", DataDirectory },
            ["verify", "--data-dir", DataDirectory],
            ["backup", "--data-dir", DataDirectory, "--to", Path.Combine(backups, "tally-backup.db")],
        })
        {
            var (exitCode, output) = await TallyProcess.RunAsync(root, arguments);

            Assert.True(exitCode == ExitCodes.Failure, $"{arguments[0]}: exit code {exitCode}:\n{output}");
            Assert.Contains("file is not a database", output);
            Assert.DoesNotContain("Unhandled exception", output);
        }
        // A backup that failed leaves nothing under the target's name, nor a partial file beside it.
        Assert.Empty(Directory.GetFileSystemEntries(backups));
    }

    [Fact]
    public async Task ServeWithoutTheOperatorKeyOnAStoreThatHoldsOrganizationsRefusesToGenerateAnother()
    {
        // Organizations made with TALLY_OPERATOR_KEY set, whose hash is never stored.
        await using (var engine = new LedgerEngine(new SqliteLedgerStore(DataDirectory), TimeProvider.System))
        {
            await engine.StartAsync();
            Assert.True((await engine.CreateOrganizationAsync("Acme")).Succeeded);
        }

        var (exitCode, output) = await TallyProcess.RunAsync(root, new Dictionary<string, string>(),
            "serve", "--urls", "http://127.0.0.1:0", "--data-dir", DataDirectory);

        // Before, it generated a key that no other node, and no earlier start, accepted.
        Assert.True(exitCode == ExitCodes.Failure, $"exit code {exitCode}:\n{output}");
        Assert.Contains("holds organizations but no generated operator key", output);
        Assert.DoesNotContain("Operator key (shown once", output);
    }

    [Fact]
    public async Task AMistypedOptionIsAUsageErrorInOneLineNotTheWholeHelp()
    {
        var output = await AssertUsageErrorAsync("serve", "--data-dri", DataDirectory);

        Assert.Contains("--data-dri", output);
        Assert.DoesNotContain("Options:", output);
    }

    [Fact]
    public async Task SeedRefusesCountsBelowOneInsteadOfReportingANegativeSeed()
    {
        var output = await AssertUsageErrorAsync("seed", "--data-dir", DataDirectory, "--organizations", "-5");

        Assert.Contains("--organizations and --entries-per-organization must be at least 1", output);
    }

    [Fact]
    public async Task ServeOnAnAddressAnotherProcessListensOnExitsWithOneLineThatSaysSo()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var address = $"http://127.0.0.1:{((IPEndPoint)listener.LocalEndpoint).Port}";

        var (exitCode, output) = await TallyProcess.RunAsync(root, "serve", "--urls", address, "--data-dir", DataDirectory);

        Assert.True(exitCode == ExitCodes.Failure, $"exit code {exitCode}:\n{output}");
        Assert.Contains($"Failed to bind to address {address}: address already in use.", output);
        Assert.DoesNotContain("Unhandled exception", output);
        // One line: not also the host's record of the failed start, with its stack trace.
        Assert.DoesNotContain("Hosting failed to start", output);
    }

    [Fact]
    public async Task ServeOnAPostgreSqlServerOutOfReachExitsWithOneLineThatSaysWhere()
    {
        // Nothing listens on port 1 of the loopback address: the connection is refused at once.
        var (exitCode, output) = await TallyProcess.RunAsync(root, "serve", "--urls", "http://127.0.0.1:0",
            "--store", "postgres", "--connection", "Host=127.0.0.1;Port=1;Username=tally;Database=tally");

        Assert.True(exitCode == ExitCodes.Failure, $"exit code {exitCode}:\n{output}");
        Assert.Contains("Cannot open the PostgreSQL store (database tally on 127.0.0.1:1)", output);
        Assert.DoesNotContain("Unhandled exception", output);
    }

    [Fact]
    public async Task SeedFillsAnEmptyFolderWhoseLedgerVerifiesCleanAndWhoseKeysAnswer()
    {
        var keysFile = Path.Combine(root, "keys.txt");

        var (exitCode, output) = await TallyProcess.RunAsync(root, "seed", "--data-dir", DataDirectory,
            "--organizations", "25", "--entries-per-organization", "4", "--keys-file", keysFile, "--keys", "3");

        Assert.True(exitCode == ExitCodes.Success, $"exit code {exitCode}:\n{output}");
        var keys = await File.ReadAllLinesAsync(keysFile);
        Assert.Equal(3, keys.Length);
        var (verified, report) = await TallyProcess.RunAsync(root, "verify", "--data-dir", DataDirectory, "--json");
        Assert.True(verified == ExitCodes.Success, $"verify exit code {verified}:\n{report}");
        var summary = JsonNode.Parse(report)!;
        Assert.True(summary["clean"]!.GetValue<bool>(), report);
        Assert.Equal(25, summary["organizationsChecked"]!.GetValue<long>());
        Assert.Equal(100, summary["entriesChecked"]!.GetValue<long>());

        await using var engine = new LedgerEngine(new SqliteLedgerStore(DataDirectory), TimeProvider.System);
        await engine.StartAsync();
        var key = await engine.LoadKeyAsync(keys[0].Split(':')[1], CancellationToken.None);
        Assert.NotNull(key);
        var balance = (await engine.GetBalanceAsync(key.OrganizationId)).Value!;
        // One grant and three one-credit consumptions per organization.
        Assert.Equal(3, balance.Used);
        Assert.Equal(4, (await engine.Store.ListEntriesAsync(key.OrganizationId, null, 10, CancellationToken.None)).Items.Count);
    }

    [Fact]
    public async Task SeedRefusesAFolderThatAlreadyHoldsOrganizationsAndLeavesItAsItWas()
    {
        string organizationId;
        await using (var engine = new LedgerEngine(new SqliteLedgerStore(DataDirectory), TimeProvider.System))
        {
            await engine.StartAsync();
            organizationId = (await engine.CreateOrganizationAsync("Acme")).Value!.Id;
            Assert.True((await engine.PutSubscriptionAsync(organizationId, new SubscriptionRequest("pro", 10, PeriodKind.Month))).Succeeded);
            Assert.True((await engine.ConsumeAsync(new ConsumeRequest(organizationId, 1, "before-seed"))).Succeeded);
        }

        var (exitCode, output) = await TallyProcess.RunAsync(root, "seed", "--data-dir", DataDirectory,
            "--organizations", "5", "--keys-file", Path.Combine(root, "keys.txt"));

        Assert.True(exitCode == ExitCodes.Failure, $"exit code {exitCode}:\n{output}");
        Assert.Contains("already holds organizations", output);
        await using var reopened = new LedgerEngine(new SqliteLedgerStore(DataDirectory), TimeProvider.System);
        await reopened.StartAsync();
        var report = await reopened.Store.VerifyAsync(CancellationToken.None);
        Assert.True(report.Clean, string.Join("; ", report.Differences));
        Assert.Equal(1, report.OrganizationsChecked);
        Assert.Equal(1, (await reopened.GetBalanceAsync(organizationId)).Value!.Used);
    }

    [Fact]
    public async Task SeedRefusesAFolderAnotherStoreHoldsAndWritesNothingIntoIt()
    {
        await using (var holder = new SqliteLedgerStore(DataDirectory))
        {
            await holder.InitializeAsync(CancellationToken.None);

            var (exitCode, output) = await TallyProcess.RunAsync(root, "seed", "--data-dir", DataDirectory,
                "--organizations", "5", "--keys-file", Path.Combine(root, "keys.txt"));

            Assert.True(exitCode == ExitCodes.Failure, $"exit code {exitCode}:\n{output}");
            Assert.Contains($"Another Tally store is open on {DataDirectory}", output);
        }
        await using var reopened = new SqliteLedgerStore(DataDirectory);
        await reopened.InitializeAsync(CancellationToken.None);
        Assert.Equal(0, (await reopened.VerifyAsync(CancellationToken.None)).OrganizationsChecked);
    }

    /// <summary>
    /// Runs `tally` with arguments it must refuse as a usage error: exit code 2, no unhandled exception, and nothing
    /// created, since the refusal comes before any store opens. Returns what it printed.
    /// </summary>
    private async Task<string> AssertUsageErrorAsync(params string[] arguments)
    {
        var (exitCode, output) = await TallyProcess.RunAsync(root, arguments);

        Assert.True(exitCode == ExitCodes.UsageError, $"exit code {exitCode}:\n{output}");
        Assert.DoesNotContain("Unhandled exception", output);
        Assert.False(Directory.Exists(DataDirectory), "refused before the store opened");
        return output;
    }

    public void Dispose()
    {
        try { Directory.Delete(root, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
