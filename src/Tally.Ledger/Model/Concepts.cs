namespace Tally.Ledger.Model;

public enum OrganizationStatus { Active, Disabled, Deleted }

public enum PeriodKind { Day, Week, Month, Year }

public enum GrantSource { Allowance, Rollover, Topup, Promo, Adjustment }

public enum HoldStatus { Open, Captured, Released, Expired }

/// <summary>The kinds of ledger entry; each one's credits is its effect on one grant's remaining.</summary>
public enum EntryKind { Grant, Consume, Hold, Capture, Release, Refund, Expire, RolloverOut, Forfeit }

[Flags]
public enum KeyScopes { None = 0, BalanceRead = 1, UsageWrite = 2, All = BalanceRead | UsageWrite }

/// <summary>The limits of SPEC §3, named once so that the engine and the HTTP layer agree.</summary>
public static class Limits
{
    /// <summary>Credits in one consumption, hold, capture or refund.</summary>
    public const long OperationCreditsMax = 1_000_000_000;

    /// <summary>Credits in one grant or one period's allowance.</summary>
    public const long GrantCreditsMax = 1_000_000_000_000;

    /// <summary>Printable ASCII characters in an idempotency key.</summary>
    public const int IdempotencyKeyLengthMax = 128;

    /// <summary>Pairs in a consumption's metadata.</summary>
    public const int MetadataPairsMax = 16;

    /// <summary>Characters in a metadata key or value, a name, an identifier or a label.</summary>
    public const int TextLengthMax = 256;

    /// <summary>Hold time to live when the caller gives none.</summary>
    public const int HoldTtlSecondsDefault = 300;

    /// <summary>A hold lives at most a day: longer reservations would hide credits from customers.</summary>
    public const int HoldTtlSecondsMax = 86_400;

    /// <summary>Entries or organizations in one page of a listing.</summary>
    public const int PageSizeMax = 1_000;

    /// <summary>Page size when the caller gives none.</summary>
    public const int PageSizeDefault = 100;

    /// <summary>Assistants per organization: `hasAssistant` needs only one, and the state is kept in memory.</summary>
    public const int AssistantsPerOrganizationMax = 1_000;

    public static bool IsValidIdempotencyKey(string? key)
    {
        if (string.IsNullOrEmpty(key) || key.Length > IdempotencyKeyLengthMax) return false;
        foreach (var character in key)
        {
            if (character < 0x21 || character > 0x7e) return false;
        }
        return true;
    }
}

public static class Names
{
    public static string Of(PeriodKind period) => period switch
    {
        PeriodKind.Day => "day", PeriodKind.Week => "week", PeriodKind.Month => "month", _ => "year",
    };

    // Constant strings rather than ToString().ToLowerInvariant(): these run on every request and every entry.
    public static string Of(GrantSource source) => source switch
    {
        GrantSource.Allowance => "allowance", GrantSource.Rollover => "rollover", GrantSource.Topup => "topup",
        GrantSource.Promo => "promo", _ => "adjustment",
    };

    public static string Of(OrganizationStatus status) => status switch
    {
        OrganizationStatus.Active => "active", OrganizationStatus.Disabled => "disabled", _ => "deleted",
    };

    public static string Of(HoldStatus status) => status switch
    {
        HoldStatus.Open => "open", HoldStatus.Captured => "captured", HoldStatus.Released => "released", _ => "expired",
    };

    public static string Of(EntryKind kind) => kind switch
    {
        EntryKind.Grant => "grant", EntryKind.Consume => "consume", EntryKind.Hold => "hold", EntryKind.Capture => "capture",
        EntryKind.Release => "release", EntryKind.Refund => "refund", EntryKind.Expire => "expire",
        EntryKind.RolloverOut => "rollover_out", _ => "forfeit",
    };

    // The parsers below read exactly the names Of writes, in lowercase ("month", not "Month"), as groupBy and scopes
    // are read: one spelling is stored, compared and documented (docs/api.md).
    public static bool TryParsePeriod(string? text, out PeriodKind period) => TryParse(text switch
    {
        "day" => PeriodKind.Day, "week" => PeriodKind.Week, "month" => PeriodKind.Month, "year" => PeriodKind.Year, _ => null,
    }, out period);

    public static bool TryParseSource(string? text, out GrantSource source) => TryParse(text switch
    {
        "allowance" => GrantSource.Allowance, "rollover" => GrantSource.Rollover, "topup" => GrantSource.Topup,
        "promo" => GrantSource.Promo, "adjustment" => GrantSource.Adjustment, _ => null,
    }, out source);

    public static bool TryParseStatus(string? text, out OrganizationStatus status) => TryParse(text switch
    {
        "active" => OrganizationStatus.Active, "disabled" => OrganizationStatus.Disabled, "deleted" => OrganizationStatus.Deleted, _ => null,
    }, out status);

    private static bool TryParse<TEnum>(TEnum? parsed, out TEnum value) where TEnum : struct, Enum
    {
        value = parsed.GetValueOrDefault();
        return parsed.HasValue;
    }

    public static bool TryParseScopes(IEnumerable<string> scopes, out KeyScopes parsed)
    {
        parsed = KeyScopes.None;
        foreach (var scope in scopes)
        {
            switch (scope)
            {
                case "balance:read": parsed |= KeyScopes.BalanceRead; break;
                case "usage:write": parsed |= KeyScopes.UsageWrite; break;
                default: return false;
            }
        }
        return true;
    }

    public static string[] Of(KeyScopes scopes)
    {
        var names = new List<string>(2);
        if (scopes.HasFlag(KeyScopes.BalanceRead)) names.Add("balance:read");
        if (scopes.HasFlag(KeyScopes.UsageWrite)) names.Add("usage:write");
        return names.ToArray();
    }
}
