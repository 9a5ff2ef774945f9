using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Logging;
using Tally.Hosting;

namespace Tally.Tests.Infrastructure;

/// <summary>
/// The `tally serve` application, built in the test process, on a free loopback port with its own SQLite
/// directory, reached over real HTTP. One per test class; every test creates its own organizations, so tests
/// stay independent. <see cref="TallyProcess"/> runs the same server as a child process instead.
/// </summary>
public class TallyServerFixture : TallyApi, IAsyncLifetime
{
    private readonly string dataDirectory = Path.Combine(Path.GetTempPath(), "tally-http-tests-" + Guid.NewGuid().ToString("N"));
    private WebApplication? app;

    /// <summary>Where this server's SQLite files live.</summary>
    public string DataDirectory => dataDirectory;

    /// <summary>The running application's services, for tests that look at the engine itself.</summary>
    public IServiceProvider Services => (app ?? throw new InvalidOperationException("The server is not started.")).Services;

    /// <summary>Lets a test class change the services, e.g. to run on a clock it moves by hand.</summary>
    protected virtual void Configure(WebApplicationBuilder builder)
    {
    }

    public async Task InitializeAsync()
    {
        app = TallyServer.Build(new TallyOptions
        {
            Urls = "http://127.0.0.1:0",
            DataDirectory = dataDirectory,
            OperatorKey = OperatorKey,
            LogLevel = LogLevel.Warning,
        }, Configure);
        await app.StartAsync();
        BaseAddress = new Uri(app.Urls.Single());
        Client = CreateClient();
    }

    public async Task DisposeAsync()
    {
        try
        {
            if (app is not null) await AssertLedgerVerifiedAsync();
        }
        finally
        {
            Client?.Dispose();
            if (app is not null)
            {
                await app.StopAsync();
                await app.DisposeAsync();
            }
            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
            try { Directory.Delete(dataDirectory, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }
}

