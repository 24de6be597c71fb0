/** A DNS data error: bad name, bad rdata, bad message. Carries no location; callers that know the file and line wrap it. */
export class DnsError extends Error {
  override name = 'DnsError';
}
