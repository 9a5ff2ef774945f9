using System.Globalization;
using System.Net;

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

    /// <summary>Where <see cref="Urls"/> came from (--urls, TALLY_URLS or Tally:Urls), to name it in a refusal.</summary>
    public string UrlsSetting { get; init; } = "--urls";
    public StoreKind Store { get; init; } = StoreKind.Sqlite;
    public string? Connection { get; init; }
    public string? OperatorKey { get; init; }

    /// <summary>Where <see cref="OperatorKey"/> came from (TALLY_OPERATOR_KEY or Tally:OperatorKey), to name it in a refusal.</summary>
    public string OperatorKeySetting { get; init; } = "TALLY_OPERATOR_KEY";

    /// <summary>How often the background sweep looks for period renewals and expired holds.</summary>
    public TimeSpan SweepInterval { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Requests per second one key may make, refilled continuously; bursts up to twice that.</summary>
    public int RateLimitPerSecond { get; init; } = 5_000;

    /// <summary>Logs at Information and above unless set; tests lower the noise with Warning.</summary>
    public LogLevel LogLevel { get; init; } = LogLevel.Information;

    /// <summary>
    /// Reads the `TALLY_*` variables (<paramref name="environment"/>, keys without the prefix) and the `Tally` section
    /// of appsettings.json (<paramref name="settings"/>); the two are read apart, so that a key at the file's top level
    /// is not taken for a variable. A value that is set but not valid is refused (<see cref="ArgumentException"/>),
    /// not replaced by the default.
    /// </summary>
    public static TallyOptions FromConfiguration(IConfiguration environment, IConfiguration settings)
    {
        (string? Value, string Name) Read(string environmentName, string sectionName) =>
            environment[environmentName] is { Length: > 0 } value ? (value, "TALLY_" + environmentName) : (settings["Tally:" + sectionName], "Tally:" + sectionName);
        int? Positive(string environmentName, string sectionName)
        {
            var (text, name) = Read(environmentName, sectionName);
            if (text is null) return null;
            return int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var number) && number > 0
                ? number
                : throw new ArgumentException($"{name} must be a whole number of at least 1; it is '{text}'.");
        }
        var options = new TallyOptions();
        var store = Read("STORE", "Store").Value;
        var (urls, urlsSetting) = Read("URLS", "Urls");
        var (operatorKey, operatorKeySetting) = Read("OPERATOR_KEY", "OperatorKey");
        return options with
        {
            DataDirectory = Read("DATA_DIR", "DataDir").Value ?? options.DataDirectory,
            Urls = urls ?? options.Urls,
            UrlsSetting = urls is null ? options.UrlsSetting : urlsSetting,
            Store = store is null ? options.Store : ParseStore(store),
            Connection = Read("CONNECTION", "Connection").Value,
            OperatorKey = operatorKey,
            OperatorKeySetting = operatorKeySetting,
            SweepInterval = Positive("SWEEP_SECONDS", "SweepSeconds") is { } seconds ? TimeSpan.FromSeconds(seconds) : options.SweepInterval,
            RateLimitPerSecond = Positive("RATE_LIMIT_PER_SECOND", "RateLimitPerSecond") ?? options.RateLimitPerSecond,
        };
    }

    /// <summary>Shortest operator key accepted: the admin API's only credential, as long as an organization secret's entropy needs.</summary>
    public const int OperatorKeyLengthMin = 16;

    /// <summary>Longest operator key accepted: with `Bearer `, it must fit the Authorization header Tally reads.</summary>
    public const int OperatorKeyLengthMax = 256;

    /// <summary>
    /// Refuses an operator key that is short enough to guess, or one that no request could send: white space or a
    /// control character inside it (a header's credential ends at a space), or longer than a header is read. The
    /// message gives the key's length, never the key. Checked by `serve` alone: the other commands never use the
    /// key, and a backup run by a scheduler with the server's environment must not stop on it.
    /// </summary>
    public static void CheckOperatorKey(TallyOptions options)
    {
        if (options.OperatorKey is not { } key) return;
        if (key.Length is < OperatorKeyLengthMin or > OperatorKeyLengthMax)
        {
            throw new ArgumentException(
                $"{options.OperatorKeySetting} must be {OperatorKeyLengthMin} to {OperatorKeyLengthMax} characters long; it is {key.Length}. " +
                "Choose a long random key, or leave it unset on an empty store for a generated one.");
        }
        if (key.Any(character => char.IsWhiteSpace(character) || char.IsControl(character)))
        {
            throw new ArgumentException($"{options.OperatorKeySetting} holds white space or a control character, which no Authorization header can carry; remove it.");
        }
    }

    /// <summary>
    /// Refuses addresses that Kestrel would take otherwise than they read: a host name other than localhost (Kestrel
    /// listens on every interface for one, so a typo of 127.0.0.1 would open the admin API to the network), https
    /// (no certificate is configured), a path, or no port. <paramref name="urls"/> is `;`-separated, as Kestrel's.
    /// </summary>
    /// <param name="setting">Where the addresses came from, to name it in the refusal: --urls, TALLY_URLS or Tally:Urls.</param>
    public static void CheckUrls(string urls, string setting = "--urls")
    {
        const string Example = "such as http://127.0.0.1:5080, http://localhost:5080, or http://*:5080 for every interface";
        var addresses = urls.Split(';', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        if (addresses.Length == 0) throw new ArgumentException($"{setting} is empty: give an address to listen on, {Example}.");
        foreach (var address in addresses)
        {
            BindingAddress parsed;
            try
            {
                parsed = BindingAddress.Parse(address);
            }
            catch (FormatException)
            {
                throw new ArgumentException($"{setting}: '{address}' is not an address; give one {Example}.");
            }
            var host = parsed.Host.Trim('[', ']');
            var problem =
                !parsed.Scheme.Equals("http", StringComparison.OrdinalIgnoreCase) ? "only http:// is served (put a TLS proxy in front for https)"
                : !(host is "*" or "+" || host.Equals("localhost", StringComparison.OrdinalIgnoreCase) || IPAddress.TryParse(host, out _))
                    ? "the host must be an IP address, localhost, or * for every interface"
                : parsed.PathBase.Length > 0 ? "an address has no path"
                : parsed.Port is < 0 or > 65_535 || !address.Contains(':' + parsed.Port.ToString(CultureInfo.InvariantCulture), StringComparison.Ordinal) ? "give a port (from 1 to 65535, or 0 for any free one)"
                : null;
            if (problem is not null) throw new ArgumentException($"{setting}: '{address}': {problem}; give an address {Example}.");
        }
    }

    public static StoreKind ParseStore(string text) => text.ToLowerInvariant() switch
    {
        "sqlite" => StoreKind.Sqlite,
        "postgres" or "postgresql" => StoreKind.Postgres,
        _ => throw new ArgumentException($"Unknown store '{text}': use sqlite or postgres."),
    };
}
