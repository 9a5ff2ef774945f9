using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Tally.Tests.Infrastructure;

/// <summary>
/// The real `tally` executable as a child process: `dotnet tally.dll serve` on a free loopback port with its
/// own data directory, standard output and error captured, and the means to end it the way operating systems
/// do: SIGKILL (a crash) or SIGTERM (a shutdown). It can be started again on the same data directory. As a
/// class fixture it runs for the whole class and ends with the ledger verify pass, like <see cref="TallyServerFixture"/>.
/// </summary>
public sealed class TallyProcess : TallyApi, IAsyncDisposable, IAsyncLifetime
{
    /// <summary>How long a start may take on a slow, shared machine before the test gives up.</summary>
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(90);

    /// <summary>How long a stopping process may take to exit; a graceful shutdown waits at most 30 s for requests.</summary>
    private static readonly TimeSpan ExitTimeout = TimeSpan.FromSeconds(60);

    /// <summary>A port found free can be taken before tally binds it; a start tries this many ports.</summary>
    private const int StartAttemptsMax = 3;

    private readonly string root = Path.Combine(Path.GetTempPath(), "tally-process-tests-" + Guid.NewGuid().ToString("N"));
    private readonly Dictionary<string, string> environment;
    private readonly IReadOnlyList<string> arguments;
    private readonly Lock outputGate = new();
    private readonly StringBuilder output = new();
    private Process? process;

    /// <summary>A process with the default settings, not started yet (a class fixture starts it).</summary>
    public TallyProcess()
        : this(null, null)
    {
    }

    private TallyProcess(IReadOnlyDictionary<string, string>? environment, IReadOnlyList<string>? arguments)
    {
        this.environment = new Dictionary<string, string>(environment ?? new Dictionary<string, string>(), StringComparer.Ordinal)
        {
            ["TALLY_OPERATOR_KEY"] = OperatorKey,
        };
        this.arguments = arguments ?? [];
        Directory.CreateDirectory(DataDirectory);
    }

    /// <summary>
    /// The built `tally` assembly: the test project references src/Tally, so the build copies tally.dll (with
    /// its runtimeconfig and deps files) next to the test assembly.
    /// </summary>
    public static string AssemblyPath { get; } = FindAssembly();

    /// <summary>The data directory (SQLite files) kept across restarts.</summary>
    public string DataDirectory => Path.Combine(root, "data");

    public int ProcessId => (process ?? throw new InvalidOperationException("tally was not started.")).Id;

    public bool IsRunning => process is { HasExited: false };

    /// <summary>Everything the process wrote to standard output and standard error, over all its starts.</summary>
    public string Output
    {
        get
        {
            lock (outputGate) return output.ToString();
        }
    }

    /// <summary>A started process; <paramref name="environment"/> and <paramref name="arguments"/> as for <see cref="Create"/>.</summary>
    public static async Task<TallyProcess> StartAsync(IReadOnlyDictionary<string, string>? environment = null, IReadOnlyList<string>? arguments = null)
    {
        var tally = Create(environment, arguments);
        await tally.StartAsync();
        return tally;
    }

    /// <param name="environment">`TALLY_*` settings beside the operator key (which is always <see cref="TallyApi.OperatorKey"/>).</param>
    /// <param name="arguments">Arguments after `serve --urls … --data-dir …`, such as `--store postgres --connection …`.</param>
    public static TallyProcess Create(IReadOnlyDictionary<string, string>? environment = null, IReadOnlyList<string>? arguments = null) =>
        new(environment, arguments);

    /// <summary>Starts `tally serve` (again) and returns when /readyz answers 200; the port is new at every start.</summary>
    public async Task StartAsync()
    {
        if (IsRunning) throw new InvalidOperationException("tally is already running.");
        for (var attempt = 1; ; attempt++)
        {
            var port = FreeLoopbackPort();
            BaseAddress = new Uri($"http://127.0.0.1:{port}/");
            var outputBefore = Output.Length;
            process?.Dispose();
            process = Launch(port);
            if (await WaitUntilReadyAsync()) break;
            var started = Output[outputBefore..];
            if (process.HasExited && started.Contains("address already in use", StringComparison.OrdinalIgnoreCase) && attempt < StartAttemptsMax) continue;
            if (!process.HasExited) process.Kill(entireProcessTree: true);
            throw new InvalidOperationException($"tally serve did not become ready on port {port}:\n{started}");
        }
        Client?.Dispose();
        Client = CreateClient();
    }

    /// <summary>A crash: SIGKILL, then waits until the process is gone.</summary>
    public async Task KillAsync()
    {
        var running = process ?? throw new InvalidOperationException("tally was not started.");
        running.Kill(entireProcessTree: true);
        await WaitForExitAsync(running);
    }

    /// <summary>A shutdown as a service manager asks for it: SIGTERM; returns the exit code.</summary>
    public async Task<int> TerminateAsync()
    {
        var running = process ?? throw new InvalidOperationException("tally was not started.");
        using (var kill = Process.Start(new ProcessStartInfo("kill", ["-TERM", running.Id.ToString(CultureInfo.InvariantCulture)]) { UseShellExecute = false })
            ?? throw new InvalidOperationException("Could not run kill."))
        {
            await kill.WaitForExitAsync();
            if (kill.ExitCode != 0) throw new InvalidOperationException($"kill -TERM {running.Id} exited with {kill.ExitCode}.");
        }
        await WaitForExitAsync(running);
        return running.ExitCode;
    }

    /// <summary>The process's resident memory (VmRSS of /proc/&lt;pid&gt;/status), in bytes.</summary>
    public long WorkingSetBytes()
    {
        foreach (var line in File.ReadLines($"/proc/{ProcessId}/status"))
        {
            if (!line.StartsWith("VmRSS:", StringComparison.Ordinal)) continue;
            var kibibytes = line["VmRSS:".Length..].Trim().Split(' ')[0];
            return long.Parse(kibibytes, CultureInfo.InvariantCulture) * 1024;
        }
        throw new InvalidOperationException($"/proc/{ProcessId}/status has no VmRSS line.");
    }

    Task IAsyncLifetime.InitializeAsync() => StartAsync();

    async Task IAsyncLifetime.DisposeAsync()
    {
        try
        {
            if (IsRunning) await AssertLedgerVerifiedAsync();
        }
        finally
        {
            await DisposeAsync();
        }
    }

    public async ValueTask DisposeAsync()
    {
        Client?.Dispose();
        if (process is not null)
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
                await WaitForExitAsync(process);
            }
            process.Dispose();
        }
        try { Directory.Delete(root, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    private Process Launch(int port)
    {
        var start = StartInfo(root, ["serve", "--urls", $"http://127.0.0.1:{port}", "--data-dir", DataDirectory, .. arguments], environment);
        var started = new Process { StartInfo = start };
        started.OutputDataReceived += (_, line) => Append(line.Data);
        started.ErrorDataReceived += (_, line) => Append(line.Data);
        if (!started.Start()) throw new InvalidOperationException("Could not start dotnet " + AssemblyPath);
        started.BeginOutputReadLine();
        started.BeginErrorReadLine();
        return started;
    }

    /// <summary>
    /// Runs `tally` with <paramref name="arguments"/> (a command that ends by itself: seed, verify, backup, or a serve
    /// that refuses to start) and returns its exit code and everything it wrote, standard error included.
    /// </summary>
    public static Task<(int ExitCode, string Output)> RunAsync(string workingDirectory, params string[] arguments) =>
        RunAsync(workingDirectory, new Dictionary<string, string> { ["TALLY_OPERATOR_KEY"] = OperatorKey }, arguments);

    /// <summary>The same, with only these `TALLY_*` settings (none: no operator key either).</summary>
    public static async Task<(int ExitCode, string Output)> RunAsync(
        string workingDirectory, IReadOnlyDictionary<string, string> environment, params string[] arguments)
    {
        using var run = Process.Start(StartInfo(workingDirectory, arguments, environment))
            ?? throw new InvalidOperationException("Could not start dotnet " + AssemblyPath);
        var standardOutput = run.StandardOutput.ReadToEndAsync();
        var standardError = run.StandardError.ReadToEndAsync();
        // Its output is read to the end only once it has exited, so a timeout reports what there is of it by then.
        await WaitForExitAsync(run, () => standardOutput.IsCompletedSuccessfully ? standardOutput.Result : "(output still open)");
        return (run.ExitCode, await standardOutput + await standardError);
    }

    /// <summary>`dotnet tally.dll` with these arguments, in this working directory, with only these `TALLY_*` settings.</summary>
    private static ProcessStartInfo StartInfo(string workingDirectory, IEnumerable<string> arguments, IReadOnlyDictionary<string, string> environment)
    {
        var start = new ProcessStartInfo
        {
            // The dotnet CLI tells the processes it runs where its host is; outside it, dotnet is on PATH.
            FileName = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host ? host : "dotnet",
            // The working directory is the test's, so no stray appsettings.json is read.
            WorkingDirectory = workingDirectory,
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        start.ArgumentList.Add(AssemblyPath);
        foreach (var argument in arguments) start.ArgumentList.Add(argument);
        // Only the test's settings: none of the runner's own TALLY_* variables reach the process.
        foreach (var name in start.Environment.Keys.Where(name => name.StartsWith("TALLY_", StringComparison.Ordinal)).ToList()) start.Environment.Remove(name);
        foreach (var (name, value) in environment) start.Environment[name] = value;
        return start;
    }

    private void Append(string? line)
    {
        if (line is null) return;
        lock (outputGate) output.Append(line).Append('\n');
    }

    private async Task<bool> WaitUntilReadyAsync()
    {
        using var probe = new HttpClient { BaseAddress = BaseAddress, Timeout = TimeSpan.FromSeconds(5) };
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < StartTimeout && !process!.HasExited)
        {
            try
            {
                using var response = await probe.GetAsync("/readyz");
                if (response.StatusCode == HttpStatusCode.OK) return true;
            }
            catch (HttpRequestException)
            {
                // Not listening yet.
            }
            catch (TaskCanceledException)
            {
                // Listening but slow to answer while it starts.
            }
            await Task.Delay(50);
        }
        return false;
    }

    private Task WaitForExitAsync(Process running) => WaitForExitAsync(running, () => Output);

    /// <summary>Waits for the process to exit; one that does not within <see cref="ExitTimeout"/> is killed, and the wait fails with <paramref name="output"/>.</summary>
    private static async Task WaitForExitAsync(Process running, Func<string> output)
    {
        using var timeout = new CancellationTokenSource(ExitTimeout);
        try
        {
            await running.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            running.Kill(entireProcessTree: true);
            throw new InvalidOperationException($"tally (pid {running.Id}) did not exit within {ExitTimeout.TotalSeconds} s:\n{output()}");
        }
    }

    private static int FreeLoopbackPort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static string FindAssembly()
    {
        var path = Path.Combine(AppContext.BaseDirectory, "tally.dll");
        if (!File.Exists(path) || !File.Exists(Path.ChangeExtension(path, ".runtimeconfig.json")))
        {
            throw new InvalidOperationException($"The built tally executable was not found at {path}; build tests/Tally.Tests, which references src/Tally.");
        }
        return path;
    }
}
