using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace Tally.Ledger.Tests.Contract;

/// <summary>
/// A throwaway PostgreSQL server for one test run: initdb into a temporary directory, started on a free
/// loopback port with durability as in production (fsync and synchronous_commit on), and stopped
/// (pg_ctl stop -m immediate) and deleted on dispose. A server left behind by a killed test run is stopped
/// and deleted by the next run.
/// </summary>
public sealed class PostgresServer : IDisposable
{
    /// <summary>Set to 1 to skip the PostgreSQL tests on a machine without PostgreSQL; without it they fail and say how to install it.</summary>
    public const string SkipVariable = "TALLY_SKIP_POSTGRES_TESTS";

    /// <summary>Optional: the directory holding initdb, pg_ctl and postgres, when they are neither in /usr/lib/postgresql/*/bin nor on PATH.</summary>
    public const string BinariesVariable = "TALLY_POSTGRES_BIN";

    /// <summary>Connections the server accepts: each open store keeps a writer and a few pooled readers, and test classes run in parallel.</summary>
    private const int ConnectionsMax = 300;

    /// <summary>How long initdb, start and stop may take on a slow, shared machine before the fixture gives up.</summary>
    private static readonly TimeSpan CommandTimeout = TimeSpan.FromMinutes(2);

    private static readonly string Root = Path.Combine(Path.GetTempPath(), "tally-postgres-tests");

    private readonly string binaries;
    private readonly string directory;
    private readonly bool runAsPostgresUser = Environment.IsPrivilegedProcess;
    private int port;
    private bool stopped;

    private PostgresServer(string binaries)
    {
        this.binaries = binaries;
        directory = Path.Combine(Root, $"{Environment.ProcessId}-{Guid.NewGuid():N}");
    }

    public static bool SkipRequested => Environment.GetEnvironmentVariable(SkipVariable) == "1";

    public string DataDirectory => Path.Combine(directory, "data");

    public string ConnectionString(string database) =>
        $"Host=127.0.0.1;Port={port};Username=postgres;Database={database};Timeout=30;Command Timeout=60";

    /// <summary>Starts a server; fails with installation advice when PostgreSQL is absent.</summary>
    public static PostgresServer Start()
    {
        var binaries = FindBinaries() ?? throw new InvalidOperationException(
            "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found in /usr/lib/postgresql/*/bin, on PATH or in "
            + $"{BinariesVariable}. Install them (Debian/Ubuntu: apt-get install postgresql; Fedora: dnf install postgresql-server; "
            + $"macOS: brew install postgresql), or set {SkipVariable}=1 to skip the PostgreSQL tests.");
        StopAbandonedServers(binaries);
        var server = new PostgresServer(binaries);
        try
        {
            server.InitializeCluster();
            server.StartServer();
        }
        catch
        {
            server.Dispose();
            throw;
        }
        return server;
    }

    /// <summary>The directory named by the variable if it is set, else the newest /usr/lib/postgresql/&lt;version&gt;/bin, else PATH.</summary>
    private static string? FindBinaries()
    {
        static bool Complete(string directory) =>
            new[] { "initdb", "pg_ctl", "postgres" }.All(name => File.Exists(Path.Combine(directory, name)));

        if (Environment.GetEnvironmentVariable(BinariesVariable) is { Length: > 0 } configured) return Complete(configured) ? configured : null;
        var debian = "/usr/lib/postgresql";
        if (Directory.Exists(debian))
        {
            var newest = Directory.GetDirectories(debian)
                .Select(path => (Path: Path.Combine(path, "bin"), Version: decimal.TryParse(Path.GetFileName(path), NumberStyles.Number, CultureInfo.InvariantCulture, out var version) ? version : -1))
                .Where(candidate => candidate.Version >= 0 && Complete(candidate.Path))
                .OrderByDescending(candidate => candidate.Version)
                .Select(candidate => candidate.Path)
                .FirstOrDefault();
            if (newest is not null) return newest;
        }
        return (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries).FirstOrDefault(Complete);
    }

    private void InitializeCluster()
    {
        Directory.CreateDirectory(directory);
        // PostgreSQL refuses to run as root, so as root the cluster belongs to, and runs as, the postgres user.
        if (runAsPostgresUser) Run("chown", ["-R", "postgres:postgres", directory], asPostgres: false);
        // --no-sync only skips initdb's own final flush of a cluster that is thrown away; the server itself syncs.
        RunTool("initdb", "-D", DataDirectory, "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync");
    }

    private void StartServer()
    {
        // A port found free can be taken before the server binds it; try a few.
        for (var attempt = 1; ; attempt++)
        {
            port = FreeLoopbackPort();
            var options = string.Join(' ',
                $"-c port={port}", "-c listen_addresses=127.0.0.1", $"-c unix_socket_directories={directory}",
                "-c fsync=on", "-c synchronous_commit=on", $"-c max_connections={ConnectionsMax}");
            try
            {
                RunTool("pg_ctl", "-D", DataDirectory, "-l", Path.Combine(directory, "server.log"), "-w", "-t", "60", "-o", options, "start");
                return;
            }
            catch (InvalidOperationException) when (attempt < 3)
            {
            }
        }
    }

    private static int FreeLoopbackPort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>Servers left behind by test processes that were killed: stopped and deleted.</summary>
    private static void StopAbandonedServers(string binaries)
    {
        if (!Directory.Exists(Root)) return;
        foreach (var abandoned in Directory.GetDirectories(Root))
        {
            var owner = Path.GetFileName(abandoned).Split('-')[0];
            if (int.TryParse(owner, CultureInfo.InvariantCulture, out var pid) && Directory.Exists($"/proc/{pid}")) continue;
            var server = new PostgresServer(binaries);
            server.Stop(Path.Combine(abandoned, "data"));
            DeleteQuietly(abandoned);
        }
    }

    public void Dispose()
    {
        if (stopped) return;
        stopped = true;
        Stop(DataDirectory);
        DeleteQuietly(directory);
    }

    private void Stop(string dataDirectory)
    {
        if (!File.Exists(Path.Combine(dataDirectory, "postmaster.pid"))) return;
        try
        {
            RunTool("pg_ctl", "-D", dataDirectory, "-m", "immediate", "-w", "stop");
        }
        catch (InvalidOperationException)
        {
            // Already stopped: nothing to do.
        }
    }

    private static void DeleteQuietly(string path)
    {
        try { Directory.Delete(path, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    private void RunTool(string tool, params string[] arguments) => Run(Path.Combine(binaries, tool), arguments, runAsPostgresUser);

    private void Run(string executable, string[] arguments, bool asPostgres)
    {
        var start = new ProcessStartInfo
        {
            FileName = asPostgres ? "runuser" : executable,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = Directory.Exists(directory) ? directory : Path.GetTempPath(),
        };
        if (asPostgres)
        {
            foreach (var argument in new[] { "-u", "postgres", "--", executable }) start.ArgumentList.Add(argument);
        }
        foreach (var argument in arguments) start.ArgumentList.Add(argument);
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"Could not start {executable}.");
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(CommandTimeout))
        {
            process.Kill(entireProcessTree: true);
            throw new InvalidOperationException($"{executable} did not finish within {CommandTimeout.TotalSeconds} s.");
        }
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException(
                $"{executable} {string.Join(' ', arguments)} exited with {process.ExitCode}: {error.Result}{output.Result}");
        }
    }
}
