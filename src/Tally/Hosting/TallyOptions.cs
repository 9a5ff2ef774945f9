namespace Tally.Hosting;

public enum StoreKind { Sqlite, Postgres }

/// <summary>
/// Settings of `tally serve`, from (highest first) the command line, `TALLY_*` environment variables and
/// the `Tally` section of appsettings.json.
/// </summary>
public sealed record TallyOptions
{
    public const string DefaultUrls = "http://127.0.0.1:5080";
    public const string DefaultDataDirectory = "tally-data";

    public string DataDirectory { get; init; } = DefaultDataDirectory;
    public string Urls { get; init; } = DefaultUrls;
    public StoreKind Store { get; init; } = StoreKind.Sqlite;
    public string? Connection { get; init; }
    public string? OperatorKey { get; init; }

    /// <summary>How often the background sweep looks for period renewals and expired holds.</summary>
    public TimeSpan SweepInterval { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Requests per second one key may make, refilled continuously; bursts up to twice that.</summary>
    public int RateLimitPerSecond { get; init; } = 5_000;

    /// <summary>Logs at Information and above unless set; tests lower the noise with Warning.</summary>
    public LogLevel LogLevel { get; init; } = LogLevel.Information;

    /// <summary>Reads the `TALLY_*` variables (as configuration keys without the prefix) and the `Tally` section.</summary>
    public static TallyOptions FromConfiguration(IConfiguration configuration)
    {
        string? Read(string environmentName, string sectionName) =>
            configuration[environmentName] is { Length: > 0 } value ? value : configuration["Tally:" + sectionName];
        var options = new TallyOptions();
        var store = Read("STORE", "Store");
        return options with
        {
            DataDirectory = Read("DATA_DIR", "DataDir") ?? options.DataDirectory,
            Urls = Read("URLS", "Urls") ?? options.Urls,
            Store = store is null ? options.Store : ParseStore(store),
            Connection = Read("CONNECTION", "Connection"),
            OperatorKey = Read("OPERATOR_KEY", "OperatorKey"),
            SweepInterval = int.TryParse(Read("SWEEP_SECONDS", "SweepSeconds"), out var seconds) && seconds > 0 ? TimeSpan.FromSeconds(seconds) : options.SweepInterval,
            RateLimitPerSecond = int.TryParse(Read("RATE_LIMIT_PER_SECOND", "RateLimitPerSecond"), out var rate) && rate > 0 ? rate : options.RateLimitPerSecond,
        };
    }

    public static StoreKind ParseStore(string text) => text.ToLowerInvariant() switch
    {
        "sqlite" => StoreKind.Sqlite,
        "postgres" or "postgresql" => StoreKind.Postgres,
        _ => throw new ArgumentException($"Unknown store '{text}': use sqlite or postgres."),
    };
}
