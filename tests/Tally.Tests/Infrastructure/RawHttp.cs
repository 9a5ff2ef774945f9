using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Tally.Tests.Infrastructure;

/// <summary>
/// Sends one HTTP/1.1 request byte for byte over a socket, for what HttpClient will not send: the same
/// header twice on separate lines, raw non-ASCII bytes, or framing of the test's choosing.
/// </summary>
public static class RawHttp
{
    /// <summary>Longest response the tests read; every Tally answer is far smaller.</summary>
    private const int ResponseBytesMax = 4 * 1024 * 1024;

    public sealed record RawReply(HttpStatusCode Status, Dictionary<string, string> Headers, string Text)
    {
        public string? ContentType => Headers.TryGetValue("content-type", out var value) ? value.Split(';')[0].Trim() : null;

        public JsonNode? Json
        {
            get
            {
                try { return Text.Length == 0 ? null : JsonNode.Parse(Text); }
                catch (JsonException) { return null; }
            }
        }
    }

    /// <summary>A reply that does not come in this time fails the test instead of hanging it.</summary>
    private static readonly TimeSpan ReplyTimeout = TimeSpan.FromSeconds(60);

    /// <summary>
    /// Sends <paramref name="head"/> (request line and headers, each line without its CRLF) and the body;
    /// adds Host, Connection: close and, when there is a body, Content-Length.
    /// </summary>
    public static Task<RawReply> SendAsync(Uri server, IEnumerable<string> head, byte[]? body = null, bool chunked = false) =>
        SendAsync(server, head.Select(line => Encoding.UTF8.GetBytes(line)), body, chunked);

    /// <summary>As above with each head line given as bytes, so a test can send bytes that are not UTF-8 or not ASCII.</summary>
    public static async Task<RawReply> SendAsync(Uri server, IEnumerable<byte[]> head, byte[]? body = null, bool chunked = false)
    {
        using var client = new TcpClient();
        await client.ConnectAsync(server.Host, server.Port);
        await using var stream = client.GetStream();
        using var request = new MemoryStream();
        foreach (var line in head) request.Write([.. line, .. "\r\n"u8]);
        request.Write(Encoding.ASCII.GetBytes($"Host: {server.Host}:{server.Port}\r\nConnection: close\r\n"));
        if (body is not null) request.Write(Encoding.ASCII.GetBytes(chunked ? "Transfer-Encoding: chunked\r\n" : $"Content-Length: {body.Length}\r\n"));
        request.Write("\r\n"u8);
        await stream.WriteAsync(request.ToArray());
        if (body is not null && chunked) await WriteChunkedAsync(stream, body);
        else if (body is not null) await WriteBodyAsync(stream, body);
        await stream.FlushAsync();

        using var timeout = new CancellationTokenSource(ReplyTimeout);
        using var received = new MemoryStream();
        var buffer = new byte[16 * 1024];
        try
        {
            int read;
            while ((read = await stream.ReadAsync(buffer, timeout.Token)) > 0)
            {
                received.Write(buffer, 0, read);
                if (received.Length > ResponseBytesMax) throw new InvalidOperationException("The response is larger than the tests expect.");
            }
        }
        catch (IOException) when (received.Length > 0)
        {
            // The server reset the connection after answering (it did not read a body it refused); the answer is whole.
        }
        return Parse(received.ToArray());
    }

    /// <summary>The server may answer (413) and close before reading all of the body; its answer is still readable.</summary>
    private static async Task WriteBodyAsync(NetworkStream stream, byte[] body)
    {
        try
        {
            await stream.WriteAsync(body);
        }
        catch (IOException)
        {
        }
    }

    /// <summary>Chunked framing carries no length up front, so the server learns the size only while reading.</summary>
    private static async Task WriteChunkedAsync(NetworkStream stream, byte[] body)
    {
        const int chunkBytes = 8 * 1024;
        try
        {
            for (var offset = 0; offset < body.Length; offset += chunkBytes)
            {
                var size = Math.Min(chunkBytes, body.Length - offset);
                await stream.WriteAsync(Encoding.ASCII.GetBytes($"{size:X}\r\n"));
                await stream.WriteAsync(body.AsMemory(offset, size));
                await stream.WriteAsync("\r\n"u8.ToArray());
            }
            await stream.WriteAsync("0\r\n\r\n"u8.ToArray());
        }
        catch (IOException)
        {
            // The server may answer (413) and stop reading before the last chunk; its answer is still readable.
        }
    }

    private static RawReply Parse(byte[] bytes)
    {
        var separator = IndexOf(bytes, "\r\n\r\n"u8.ToArray());
        if (separator < 0) throw new InvalidOperationException("The response has no end of headers: " + Encoding.UTF8.GetString(bytes));
        var lines = Encoding.ASCII.GetString(bytes, 0, separator).Split("\r\n");
        var status = (HttpStatusCode)int.Parse(lines[0].Split(' ')[1]);
        // An interim answer (100 Continue to `Expect: 100-continue`) comes first; the final one follows it.
        if ((int)status is >= 100 and < 200) return Parse(bytes[(separator + 4)..]);
        var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var line in lines.Skip(1))
        {
            var colon = line.IndexOf(':');
            headers[line[..colon].Trim().ToLowerInvariant()] = line[(colon + 1)..].Trim();
        }
        var body = bytes.AsSpan(separator + 4).ToArray();
        if (headers.TryGetValue("transfer-encoding", out var encoding) && encoding.Contains("chunked", StringComparison.OrdinalIgnoreCase))
        {
            body = Dechunk(body);
        }
        return new RawReply(status, headers, Encoding.UTF8.GetString(body));
    }

    private static byte[] Dechunk(byte[] body)
    {
        using var result = new MemoryStream();
        var position = 0;
        while (position < body.Length)
        {
            var lineEnd = IndexOf(body, "\r\n"u8.ToArray(), position);
            var size = Convert.ToInt32(Encoding.ASCII.GetString(body, position, lineEnd - position).Split(';')[0].Trim(), 16);
            if (size == 0) break;
            result.Write(body, lineEnd + 2, size);
            position = lineEnd + 2 + size + 2;
        }
        return result.ToArray();
    }

    private static int IndexOf(byte[] haystack, byte[] needle, int start = 0)
    {
        for (var index = start; index <= haystack.Length - needle.Length; index++)
        {
            if (haystack.AsSpan(index, needle.Length).SequenceEqual(needle)) return index;
        }
        return -1;
    }
}
