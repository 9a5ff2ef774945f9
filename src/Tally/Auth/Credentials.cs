using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using Tally.Ledger.Engine;
using Tally.Ledger.Model;

namespace Tally.Auth;

/// <summary>
/// An authenticated organization key, with its organization's committed state as authentication read it when
/// the caller asked for it (<see cref="OrganizationRead.State"/>), so that the handler need not read it again; null otherwise.
/// </summary>
public sealed record OrganizationCaller(ApiKeyRecord Key, OrganizationState? Organization)
{
    public string OrganizationId => Key.OrganizationId;
}

public enum CredentialFailure { None, Missing, Malformed, Unknown, MissingScope, OrganizationUnavailable }

/// <summary>What authentication reads of the key's organization, to refuse one that is disabled or deleted (404).</summary>
public enum OrganizationRead
{
    /// <summary>
    /// Nothing: the request is a command whose own batch refuses an organization that is not active, under the
    /// batch's lock (on PostgreSQL a read here was a query per consumption, and a disable could slip in after it).
    /// </summary>
    None,

    /// <summary>The status alone (reads of the tables: usage, ledger).</summary>
    Status,

    /// <summary>The whole committed state, which the handler then answers from (balances).</summary>
    State,
}

/// <summary>
/// SPEC §3.1: `Bearer pk_…:sk_…`, `Bearer sk_…` or a bare `sk_…`. A secret is found in the engine's key cache, or
/// by its hash in the store; the public part is compared in constant time; nothing here logs a credential.
/// </summary>
public sealed class Credentials(LedgerEngine engine, OperatorKey operatorKey)
{
    /// <summary>Longest header worth parsing: a public part, a colon and a secret, with room to spare.</summary>
    public const int AuthorizationLengthMax = 512;

    public async ValueTask<(OrganizationCaller? Caller, CredentialFailure Failure)> AuthenticateOrganizationAsync(
        HttpContext context, KeyScopes required, OrganizationRead read)
    {
        // The header is parsed in place (ranges, not substrings): a cached key is then found without allocating.
        if (!TryReadToken(context, out var header, out var token, out var missing))
        {
            return (null, missing ? CredentialFailure.Missing : CredentialFailure.Malformed);
        }
        var (publicKey, secret) = Split(header, token);
        if (publicKey is { } given && !IsKeyPart(header.AsSpan(given), "pk_")) return (null, CredentialFailure.Malformed);
        if (!IsKeyPart(header.AsSpan(secret), "sk_")) return (null, CredentialFailure.Malformed);
        if (!engine.TryFindCachedKey(header.AsSpan(secret), out var key))
        {
            key = await engine.LoadKeyAsync(header[secret], context.RequestAborted);
            if (key is null) return (null, CredentialFailure.Unknown);
        }
        if (publicKey is { } part && !CryptographicOperations.FixedTimeEquals(
                MemoryMarshal.AsBytes(header.AsSpan(part)), MemoryMarshal.AsBytes(key.PublicKey.AsSpan())))
        {
            return (null, CredentialFailure.Unknown);
        }
        // A key always names an organization that was created; none found means it was deleted, which
        // seeds/002 answers like a disabled one (404), not like an unknown key (401).
        var organization = read == OrganizationRead.State ? await engine.Store.ReadOrganizationAsync(key.OrganizationId, context.RequestAborted) : null;
        var status = read switch
        {
            OrganizationRead.State => organization?.Status,
            OrganizationRead.Status => await engine.Store.ReadOrganizationStatusAsync(key.OrganizationId, context.RequestAborted),
            _ => OrganizationStatus.Active,
        };
        var caller = new OrganizationCaller(key, organization);
        if (status is not OrganizationStatus.Active) return (caller, CredentialFailure.OrganizationUnavailable);
        if ((key.Scopes & required) != required) return (caller, CredentialFailure.MissingScope);
        return (caller, CredentialFailure.None);
    }

    public bool IsOperator(HttpContext context) =>
        TryReadToken(context, out var header, out var token, out _) && HasBearer(context) && operatorKey.Matches(header[token]);

    private static bool HasBearer(HttpContext context) =>
        context.Request.Headers.Authorization.ToString().StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase);

    /// <summary>
    /// The Authorization header and where its credential lies in it, with any `Bearer ` scheme and surrounding
    /// white space left out. False when there is no credential (<paramref name="missing"/>) or when what is there
    /// cannot be one: several headers, an overlong one, or a space inside the credential.
    /// </summary>
    private static bool TryReadToken(HttpContext context, out string header, out Range token, out bool missing)
    {
        header = "";
        token = default;
        missing = true;
        var values = context.Request.Headers.Authorization;
        if (values.Count == 0) return false;
        if (values.Count > 1) { missing = false; return false; }
        header = values[0] ?? "";
        return TryReadToken(header, out token, out missing);
    }

    /// <summary>
    /// The secret part of a credential header in any of its spellings (after the colon of `pk_…:sk_…`, the `Bearer `
    /// scheme and white space left out), unchecked; false when the header cannot hold a credential. The rate limiter
    /// counts by it, so that one key has one bucket however it is written.
    /// </summary>
    public static bool TryFindSecret(string header, out Range secret)
    {
        secret = default;
        if (!TryReadToken(header, out var token, out _)) return false;
        secret = Split(header, token).Secret;
        return true;
    }

    /// <summary>The public part (before the first colon, if there is one) and the secret of a credential.</summary>
    private static (Range? PublicKey, Range Secret) Split(string header, Range token)
    {
        var colon = header.AsSpan(token).IndexOf(':');
        if (colon < 0) return (null, token);
        var (offset, length) = token.GetOffsetAndLength(header.Length);
        return (offset..(offset + colon), (offset + colon + 1)..(offset + length));
    }

    private static bool TryReadToken(string header, out Range token, out bool missing)
    {
        token = default;
        missing = true;
        var text = header.AsSpan();
        int start = 0, end = text.Length;
        while (start < end && char.IsWhiteSpace(text[start])) start++;
        while (end > start && char.IsWhiteSpace(text[end - 1])) end--;
        if (start == end) return false;
        if (end - start > AuthorizationLengthMax) { missing = false; return false; }
        if (text[start..end].StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
        {
            start += "Bearer ".Length;
            while (start < end && char.IsWhiteSpace(text[start])) start++;
        }
        token = start..end;
        if (start == end) return false;
        missing = false;
        return !text[start..end].Contains(' ');
    }

    private static bool IsKeyPart(ReadOnlySpan<char> text, string prefix)
    {
        if (!text.StartsWith(prefix, StringComparison.Ordinal) || text.Length <= prefix.Length || text.Length > 128) return false;
        foreach (var character in text[prefix.Length..])
        {
            if (!char.IsAsciiLetterOrDigit(character)) return false;
        }
        return true;
    }
}

/// <summary>
/// The operator's admin credential: from TALLY_OPERATOR_KEY, or generated on the first start of an empty
/// store and printed once. Only its SHA-256 hash is kept, in memory and in the store's settings.
/// </summary>
public sealed class OperatorKey
{
    public const string SettingName = "operator_key_sha256";

    private byte[] hash = [];

    public bool IsConfigured => hash.Length > 0;

    public void Use(string hexHash) => hash = Convert.FromHexString(hexHash);

    public bool Matches(string candidate) =>
        hash.Length > 0 && CryptographicOperations.FixedTimeEquals(SHA256.HashData(Encoding.UTF8.GetBytes(candidate)), hash);
}
