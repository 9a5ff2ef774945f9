using System.Collections.Concurrent;
using System.Net;
using System.Text;

namespace Tally.Hosting;

/// <summary>
/// One token bucket per known credential (the secret of a key this server has authenticated and still holds, in
/// whichever spelling, or the operator key), and one per client address for everything else (no credential, one
/// longer than any credential, or one not known): `RateLimitPerSecond` tokens a second, refilled continuously,
/// bursts up to twice that, no queueing; a refused request gets `429` with `Retry-After: 1`.
/// </summary>
/// <remarks>
/// It replaces ASP.NET Core's partitioned token-bucket limiter, which cost about a tenth of a balance check's
/// time (bench/RESULTS.md): a hex partition name and a lease object per request, and a lock shared by all
/// partitions. Here a request hashes its credential into a 64-bit name on the stack (the header is never kept:
/// it holds a secret), finds its bucket without a lock, and takes a token under the bucket's own lock.
/// </remarks>
public sealed class CredentialRateLimiter
{
    /// <summary>
    /// Buckets kept at once. Past this, buckets that have refilled are dropped (a full bucket is the same as none);
    /// if every bucket is still in use, a new credential shares its client address's bucket instead of adding one.
    /// </summary>
    public const int BucketsMax = 100_000;

    /// <summary>Paths that are never rate limited: probes and scrapes must work when clients are throttled.</summary>
    private static readonly string[] UnlimitedPaths = ["/healthz", "/readyz", "/metrics"];

    /// <summary>Whether a credential is one the server knows, so that it gets a bucket of its own.</summary>
    public delegate bool KnownCredential(ReadOnlySpan<char> credential);

    private readonly ConcurrentDictionary<ulong, Bucket> buckets = new();
    private readonly TimeProvider time;
    private readonly KnownCredential isKnown;
    private readonly double tokensPerSecond;
    private readonly double capacity;
    private int bucketCount;
    private int pruning;

    /// <summary>
    /// The server's limiter: a credential is known when the engine's key cache holds it (it authenticated, and was not
    /// revoked since) or it is the operator key. Unknown credentials (a key's first request, a mistyped or guessed one)
    /// spend their client address's tokens: each would otherwise get a fresh bucket, so that a client sending a new
    /// random key with every request was not limited at all, while each one cost a look-up in the store.
    /// </summary>
    public CredentialRateLimiter(TallyOptions options, TimeProvider time, Ledger.Engine.LedgerEngine engine, Auth.OperatorKey operatorKey)
        : this(options, time, credential => engine.IsKeyCached(credential) || operatorKey.Matches(new string(credential)))
    {
    }

    internal CredentialRateLimiter(TallyOptions options, TimeProvider time, KnownCredential isKnown)
    {
        this.time = time;
        this.isKnown = isKnown;
        tokensPerSecond = options.RateLimitPerSecond;
        capacity = 2.0 * options.RateLimitPerSecond;
    }

    /// <summary>Buckets held now, for tests of the bound.</summary>
    internal int BucketCount => Volatile.Read(ref bucketCount);

    /// <summary>Whether the request may go on: probes and scrapes always, the rest while their bucket has a token.</summary>
    public bool Allows(HttpContext context) => IsUnlimited(context.Request.Path.Value) || TryTake(context);

    /// <summary>Routing ignores case and a trailing slash, so /Metrics and /healthz/ are the same endpoints and exempt too.</summary>
    private static bool IsUnlimited(string? path)
    {
        var trimmed = path.AsSpan().TrimEnd('/');
        foreach (var unlimited in UnlimitedPaths)
        {
            if (trimmed.Equals(unlimited, StringComparison.OrdinalIgnoreCase)) return true;
        }
        return false;
    }

    /// <summary>Takes a token from the bucket of the request's credential; false when it is empty.</summary>
    internal bool TryTake(HttpContext context)
    {
        var now = time.GetTimestamp();
        var authorization = context.Request.Headers.Authorization;
        var header = authorization.Count == 1 ? authorization[0] : null;
        // By the secret alone: `Bearer pk_…:sk_…`, `Bearer sk_…` and `sk_…` are one key and share its bucket (else
        // each spelling, or each public part sent with the same secret, would multiply the key's rate).
        var credential = header is { Length: > 0 and <= Auth.Credentials.AuthorizationLengthMax }
            ? Auth.Credentials.TryFindSecret(header, out var secret) ? header.AsSpan(secret) : header.AsSpan()
            : default;
        var name = credential.IsEmpty ? NameOf(context.Connection.RemoteIpAddress) : NameOf(credential);
        if (!buckets.TryGetValue(name, out var bucket))
        {
            // A credential's bucket exists only if the credential was known when it was added, so the key cache is
            // asked here alone, not again on every request of a key that authentication looks up anyway.
            if (!credential.IsEmpty && !isKnown(credential)) name = NameOf(context.Connection.RemoteIpAddress);
            if (Volatile.Read(ref bucketCount) >= BucketsMax) Prune(now);
            if (Volatile.Read(ref bucketCount) >= BucketsMax) name = NameOf(context.Connection.RemoteIpAddress);
            bucket = GetOrAdd(name, now);
        }
        return bucket.TryTake(now, this);
    }

    /// <summary>
    /// The name's bucket, added if it has none. Counted only when this request's bucket is the one added:
    /// ConcurrentDictionary.GetOrAdd may run its factory for several requests at once and keep one result, and a
    /// count of every run drifted upward (23,173 for 20,000 buckets, measured), until the bound refused every new key.
    /// </summary>
    private Bucket GetOrAdd(ulong name, long now)
    {
        while (true)
        {
            if (buckets.TryGetValue(name, out var existing)) return existing;
            var created = new Bucket(capacity, now);
            if (buckets.TryAdd(name, created))
            {
                Interlocked.Increment(ref bucketCount);
                return created;
            }
        }
    }

    /// <summary>Drops every bucket that has refilled; one request at a time does it, the others go on.</summary>
    private void Prune(long now)
    {
        if (Interlocked.Exchange(ref pruning, 1) == 1) return;
        try
        {
            foreach (var (name, bucket) in buckets)
            {
                if (bucket.IsFullAt(now, this) && buckets.TryRemove(name, out _)) Interlocked.Decrement(ref bucketCount);
            }
        }
        finally
        {
            Volatile.Write(ref pruning, 0);
        }
    }

    private static ulong NameOf(ReadOnlySpan<char> credential)
    {
        Span<byte> bytes = stackalloc byte[1 + Encoding.UTF8.GetMaxByteCount(Auth.Credentials.AuthorizationLengthMax)];
        bytes[0] = 1;
        var length = 1 + Encoding.UTF8.GetBytes(credential, bytes[1..]);
        return Hash(bytes[..length]);
    }

    private static ulong NameOf(IPAddress? address)
    {
        Span<byte> bytes = stackalloc byte[17];
        bytes[0] = 2;
        var length = address is not null && address.TryWriteBytes(bytes[1..], out var written) ? 1 + written : 1;
        return Hash(bytes[..length]);
    }

    /// <summary>
    /// 64 bits from two passes of the framework's seeded hash. A bucket's name needs no cryptographic strength:
    /// it only keeps credentials apart (two of 100,000 share a name with odds near 3 in 10 billion), and the
    /// seed, random per process, keeps anyone from choosing a credential that lands on another's bucket. A
    /// SHA-256 here was 3% of a balance check's time, on top of the one the key lookup needs.
    /// </summary>
    private static ulong Hash(ReadOnlySpan<byte> bytes)
    {
        var high = new HashCode();
        high.AddBytes(bytes);
        var low = new HashCode();
        low.Add(SecondPassSalt);
        low.AddBytes(bytes);
        return (ulong)(uint)high.ToHashCode() << 32 | (uint)low.ToHashCode();
    }

    private const int SecondPassSalt = 0x5BD1_E995;

    private sealed class Bucket(double tokens, long updatedAt)
    {
        private double tokens = tokens;
        private long updatedAt = updatedAt;

        public bool TryTake(long now, CredentialRateLimiter limiter)
        {
            lock (this)
            {
                Refill(now, limiter);
                if (tokens < 1) return false;
                tokens -= 1;
                return true;
            }
        }

        public bool IsFullAt(long now, CredentialRateLimiter limiter)
        {
            lock (this)
            {
                Refill(now, limiter);
                return tokens >= limiter.capacity;
            }
        }

        private void Refill(long now, CredentialRateLimiter limiter)
        {
            var seconds = limiter.time.GetElapsedTime(updatedAt, now).TotalSeconds;
            if (seconds <= 0) return;
            tokens = Math.Min(limiter.capacity, tokens + seconds * limiter.tokensPerSecond);
            updatedAt = now;
        }
    }
}
