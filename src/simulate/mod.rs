//! `fink simulate`: seeded synthetic alerts shaped like Fink's ZTF science
//! alerts (nested `candidate`, `prv_candidates`, three gzip'd FITS cutouts of
//! ~13 KB, science columns), or Rubin's (`lsst`), written as Parquet files
//! in night folders.

mod crc;
mod lsst;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::*;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Fields, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

/// ZTF alert packet `candidate` fields (name:type; d double, f float, i int, l long, s string).
const CANDIDATE: &str = "jd:d,fid:i,pid:l,diffmaglim:f,pdiffimfilename:s,programpi:s,programid:i,candid:l,isdiffpos:s,tblid:l,nid:i,rcid:i,field:i,xpos:f,ypos:f,ra:d,dec:d,magpsf:f,sigmapsf:f,chipsf:f,magap:f,sigmagap:f,distnr:f,magnr:f,sigmagnr:f,chinr:f,sharpnr:f,sky:f,magdiff:f,fwhm:f,classtar:f,mindtoedge:f,magfromlim:f,seeratio:f,aimage:f,bimage:f,aimagerat:f,bimagerat:f,elong:f,nneg:i,nbad:i,rb:f,ssdistnr:f,ssmagnr:f,ssnamenr:s,sumrat:f,magapbig:f,sigmagapbig:f,ranr:d,decnr:d,sgmag1:f,srmag1:f,simag1:f,szmag1:f,sgscore1:f,distpsnr1:f,ndethist:i,ncovhist:i,jdstarthist:d,jdendhist:d,scorr:d,tooflag:i,objectidps1:l,objectidps2:l,sgmag2:f,srmag2:f,simag2:f,szmag2:f,sgscore2:f,distpsnr2:f,objectidps3:l,sgmag3:f,srmag3:f,simag3:f,szmag3:f,sgscore3:f,distpsnr3:f,nmtchps:i,rfid:l,jdstartref:d,jdendref:d,nframesref:i,rbversion:s,dsnrms:f,ssnrms:f,dsdiff:f,magzpsci:f,magzpsciunc:f,magzpscirms:f,nmatches:i,clrcoeff:f,clrcounc:f,zpclrcov:f,zpmed:f,clrmed:f,clrrms:f,neargaia:f,neargaiabright:f,maggaia:f,maggaiabright:f,exptime:f,drb:f,drbversion:s";
/// `prv_candidates` item fields.
const PRV: &str = "jd:d,fid:i,pid:l,diffmaglim:f,pdiffimfilename:s,programpi:s,programid:i,candid:l,isdiffpos:s,tblid:l,nid:i,rcid:i,field:i,xpos:f,ypos:f,ra:d,dec:d,magpsf:f,sigmapsf:f,chipsf:f,magap:f,sigmagap:f,distnr:f,magnr:f,sigmagnr:f,chinr:f,sharpnr:f,sky:f,magdiff:f,fwhm:f,classtar:f,mindtoedge:f,magfromlim:f,seeratio:f,aimage:f,bimage:f,aimagerat:f,bimagerat:f,elong:f,nneg:i,nbad:i,rb:f,ssdistnr:f,ssmagnr:f,ssnamenr:s,sumrat:f,magapbig:f,sigmagapbig:f,ranr:d,decnr:d,scorr:d,magzpsci:f,magzpsciunc:f,magzpscirms:f,clrcoeff:f,clrcounc:f,rbversion:s";
/// Fink's cross-match labels (SIMBAD classes and Fink's own), weighted as
/// (label, weight): every catalogue topic finds some, and most alerts are
/// stars or unknown, as on a real night.
const XMATCH: &[(&str, u32)] = &[
    ("Unknown", 300),
    ("Star", 60),
    ("RRLyr", 40),
    ("EB*", 40),
    ("EclBin", 20),
    ("delSctV*", 10),
    ("LongPeriodV*", 10),
    ("QSO", 25),
    ("AGN", 10),
    ("Galaxy", 30),
    ("GinPair", 5),
    ("Seyfert_1", 5),
    ("EmG", 5),
    ("Candidate_SN*", 10),
    ("SN*_Candidate", 5),
    ("SN", 10),
    ("Transient", 5),
    ("YSO_Candidate", 5),
    ("Candidate_YSO", 3),
    ("TTau*_Candidate", 3),
    ("Blazar", 3),
    ("BLLac", 2),
    ("Blazar_Candidate", 2),
    ("LensedImage", 2),
    ("GravLens", 1),
    ("BlackHole", 1),
    ("Fail", 5),
    ("Fail 504", 2),
];

fn pick<'a>(rng: &mut Rng, choices: &[(&'a str, u32)]) -> &'a str {
    let total: u32 = choices.iter().map(|(_, w)| w).sum();
    let mut at = rng.below(total as u64) as u32;
    for (c, w) in choices {
        if at < *w {
            return c;
        }
        at -= w;
    }
    choices[0].0
}

/// SplitMix64: small, fast, and the same sequence on every platform.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f64()
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    /// Approximately normal (sum of uniforms).
    pub fn normal(&mut self, mean: f64, sd: f64) -> f64 {
        let s: f64 = (0..6).map(|_| self.f64()).sum::<f64>() - 3.0;
        mean + sd * s * std::f64::consts::SQRT_2
    }
}

fn parse_fields(spec: &str) -> Vec<(&str, char)> {
    spec.split(',')
        .map(|p| {
            let (n, t) = p.split_once(':').expect("name:type");
            (n, t.chars().next().expect("type"))
        })
        .collect()
}

fn dtype(t: char) -> DataType {
    match t {
        'd' => DataType::Float64,
        'f' => DataType::Float32,
        'i' => DataType::Int32,
        'l' => DataType::Int64,
        _ => DataType::Utf8,
    }
}

fn struct_fields(spec: &str) -> Fields {
    parse_fields(spec).into_iter().map(|(n, t)| Field::new(n, dtype(t), true)).collect()
}

fn cutout_fields() -> Fields {
    Fields::from(vec![Field::new("fileName", DataType::Utf8, true), Field::new("stampData", DataType::Binary, true)])
}

pub fn schema() -> Schema {
    let cand = struct_fields(CANDIDATE);
    let prv = struct_fields(PRV);
    let item = Arc::new(Field::new("element", DataType::Struct(prv), true));
    let mut fields = vec![
        Field::new("schemavsn", DataType::Utf8, true),
        Field::new("publisher", DataType::Utf8, true),
        Field::new("objectId", DataType::Utf8, true),
        Field::new("candid", DataType::Int64, true),
        Field::new("candidate", DataType::Struct(cand), true),
        Field::new("prv_candidates", DataType::List(item), true),
    ];
    for c in ["cutoutScience", "cutoutTemplate", "cutoutDifference"] {
        fields.push(Field::new(c, DataType::Struct(cutout_fields()), true));
    }
    fields.push(Field::new("timestamp", DataType::Timestamp(TimeUnit::Microsecond, None), true));
    fields.push(Field::new("cdsxmatch", DataType::Utf8, true));
    fields.push(Field::new("roid", DataType::Int32, true));
    for f in ["rf_snia_vs_nonia", "snn_snia_vs_nonia", "snn_sn_vs_all", "mulens", "rf_kn_vs_nonkn", "anomaly_score"] {
        fields.push(Field::new(f, DataType::Float64, true));
    }
    fields.push(Field::new("nalerthist", DataType::Int32, true));
    fields.push(Field::new("fink_broker_version", DataType::Utf8, true));
    fields.push(Field::new("tns", DataType::Utf8, true));
    // The SPICY cross-match and the r-band light-curve features Fink's
    // science modules add (yso_spicy_candidates reads them).
    fields.push(Field::new("spicy_id", DataType::Int64, true));
    fields.push(Field::new("spicy_class", DataType::Utf8, true));
    let slope = Field::new("linear_fit_slope", DataType::Float64, true);
    fields.push(Field::new("lc_features_r", DataType::Struct(vec![slope].into()), true));
    Schema::new(fields)
}

/// (RA, Dec) in degrees of magnetic cataclysmic variables (V479 And,
/// V1309 Ori, AM Her, AR UMa), as catalogued in fink-filters' magnetic_cvs
/// list.
const MAGNETIC_CVS: &[(f64, f64)] =
    &[(4.737083, 34.912222), (78.9225, 1.077778), (274.055417, 49.867778), (168.93625, 42.973056)];

/// One alert's core numbers, shared by its candidate and history.
struct Alert {
    object: String,
    candid: i64,
    jd: f64,
    ra: f64,
    dec: f64,
    mag: f64,
}

/// A plausible value for a candidate field.
fn value(rng: &mut Rng, name: &str, a: &Alert, jd: f64, mag: f64) -> Option<f64> {
    Some(match name {
        "jd" => jd,
        "fid" => 1.0 + rng.below(2) as f64,
        "candid" => a.candid as f64,
        "ra" | "ranr" => a.ra + rng.normal(0.0, 1e-5),
        "dec" | "decnr" => a.dec + rng.normal(0.0, 1e-5),
        "magpsf" | "magap" | "magapbig" => mag,
        "sigmapsf" | "sigmagap" | "sigmagapbig" => rng.range(0.01, 0.25),
        "diffmaglim" => rng.range(19.5, 21.0),
        "rb" | "drb" => rng.f64(),
        "sgscore1" | "sgscore2" | "sgscore3" => {
            if rng.below(20) == 0 {
                return None; // missing in real data too
            }
            rng.f64()
        }
        "distpsnr1" | "distpsnr2" | "distpsnr3" => rng.range(0.0, 30.0),
        "ndethist" => 1.0 + rng.below(60) as f64,
        // Sextractor's star/galaxy score: most sources are point-like.
        "classtar" => rng.f64().sqrt(),
        "ncovhist" => 1.0 + rng.below(400) as f64,
        // New objects (a few days) next to long-known ones.
        "jdstarthist" => jd - if rng.below(5) == 0 { rng.range(0.0, 6.0) } else { rng.range(0.0, 300.0) },
        "jdendhist" => jd,
        "nid" => 1000.0 + rng.below(500) as f64,
        "rcid" => rng.below(64) as f64,
        "field" => 200.0 + rng.below(700) as f64,
        "programid" => 1.0 + rng.below(3) as f64,
        "ssdistnr" | "ssmagnr" => -999.0,
        "exptime" => 30.0,
        n if n.starts_with("objectidps") || n == "pid" || n == "tblid" || n == "rfid" => rng.below(1 << 40) as f64,
        n if n.starts_with("sg") || n.starts_with("sr") || n.starts_with("si") || n.starts_with("sz") => {
            rng.range(14.0, 22.0)
        }
        _ => rng.normal(0.0, 1.0),
    })
}

fn string_value(rng: &mut Rng, name: &str) -> String {
    match name {
        "isdiffpos" => if rng.below(4) == 0 { "f" } else { "t" }.into(),
        "rbversion" => "t17_f5_c3".into(),
        "drbversion" => "d6_m7".into(),
        "programpi" => "Kulkarni".into(),
        "ssnamenr" => "null".into(),
        _ => format!("ztf_{}_{:06}_sci.fits", name, rng.below(1_000_000)),
    }
}

fn append_struct(b: &mut StructBuilder, spec: &[(&str, char)], rng: &mut Rng, a: &Alert, jd: f64, mag: f64) {
    for (i, (name, t)) in spec.iter().enumerate() {
        match t {
            's' => b.field_builder::<StringBuilder>(i).unwrap().append_value(string_value(rng, name)),
            _ => {
                let v = value(rng, name, a, jd, mag);
                match t {
                    'd' => b.field_builder::<Float64Builder>(i).unwrap().append_option(v),
                    'f' => b.field_builder::<Float32Builder>(i).unwrap().append_option(v.map(|x| x as f32)),
                    'i' => b.field_builder::<Int32Builder>(i).unwrap().append_option(v.map(|x| x as i32)),
                    _ => b.field_builder::<Int64Builder>(i).unwrap().append_option(v.map(|x| x as i64)),
                }
            }
        }
    }
    b.append(true);
}

/// A gzip'd FITS image: 63x63 float32 noise around a point source.
fn fits_cutout(rng: &mut Rng) -> Vec<u8> {
    let mut header = String::new();
    for card in [
        "SIMPLE  =                    T",
        "BITPIX  =                  -32",
        "NAXIS   =                    2",
        "NAXIS1  =                   63",
        "NAXIS2  =                   63",
        "ORIGIN  = 'fink simulate'",
        "END",
    ] {
        header.push_str(&format!("{card:<80}"));
    }
    while header.len() % 2880 != 0 {
        header.push(' ');
    }
    let mut raw = header.into_bytes();
    let (cx, cy, amp) = (rng.range(28.0, 34.0), rng.range(28.0, 34.0), rng.range(50.0, 2000.0));
    for y in 0..63 {
        for x in 0..63 {
            let r2 = (x as f64 - cx).powi(2) + (y as f64 - cy).powi(2);
            let v = 100.0 + rng.normal(0.0, 8.0) + amp * (-r2 / 4.0).exp();
            raw.extend_from_slice(&(v as f32).to_be_bytes());
        }
    }
    while raw.len() % 2880 != 0 {
        raw.push(0);
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&raw).expect("in-memory gzip");
    gz.finish().expect("in-memory gzip")
}

fn object_id(rng: &mut Rng, year: u32) -> String {
    let letters: String = (0..7).map(|_| (b'a' + rng.below(26) as u8) as char).collect();
    format!("ZTF{:02}{letters}", year % 100)
}

pub struct SimulateOptions {
    pub out: PathBuf,
    pub alerts: usize,
    pub seed: u64,
    pub per_file: usize,
    pub nights: usize,
    pub survey: Survey,
}

/// Which alerts to simulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Survey {
    /// ZTF science alerts (candidate, prv_candidates, Fink's columns).
    #[default]
    Ztf,
    /// Rubin alerts (diaSource, diaObject, prvDiaSources, xm/clf/pred/misc).
    Lsst,
}

/// Rubin alerts built at a time.
const LSST_CHUNK: usize = 256;

/// Write the alerts; returns the files written.
pub fn simulate(opts: &SimulateOptions, progress: &dyn Fn(usize)) -> anyhow::Result<Vec<PathBuf>> {
    let mut rng = Rng::new(opts.seed);
    let schema = Arc::new(schema());
    // A pool of cutouts per kind: gzip is the slow part. Each alert's copy is
    // made unique (below), as real stamps are: shared bytes would let
    // Parquet's dictionary fold them, and big files would read unrealistically
    // few bytes per alert.
    let pools: Vec<Vec<Vec<u8>>> = match opts.survey {
        Survey::Ztf => (0..3).map(|_| (0..48).map(|_| fits_cutout(&mut rng)).collect()).collect(),
        Survey::Lsst => lsst::cutout_pools(&mut rng),
    };
    let cand_spec = parse_fields(CANDIDATE);
    let prv_spec = parse_fields(PRV);
    let nights = opts.nights.max(1);
    let per_night = opts.alerts.div_ceil(nights);
    let per_file = opts.per_file.max(1);
    let mut files = Vec::new();
    let mut written = 0usize;
    let mut candid = match opts.survey {
        Survey::Ztf => 1_100_000_000_000_000_000i64 + (rng.below(1 << 30) as i64) * 1000,
        Survey::Lsst => 0,
    };
    for night in 0..nights {
        let day = 1 + night as u32;
        let dir = match opts.survey {
            Survey::Ztf => opts.out.join(format!("202001{day:02}")),
            Survey::Lsst => opts.out.join(format!("202601{day:02}")),
        };
        std::fs::create_dir_all(&dir)?;
        let mut in_night = 0;
        let mut part = 0;
        while in_night < per_night && written < opts.alerts {
            let n = per_file.min(per_night - in_night).min(opts.alerts - written);
            let batches = match opts.survey {
                Survey::Ztf => {
                    vec![make_batch(&schema, &mut rng, n, &mut candid, night, &cand_spec, &prv_spec, &pools)?]
                }
                // Rubin alerts are big (histories): built a few hundred at a
                // time, so that a file of 10,000 never sits in memory whole.
                Survey::Lsst => (0..n)
                    .step_by(LSST_CHUNK)
                    .map(|at| lsst::batch(&mut rng, LSST_CHUNK.min(n - at), &mut candid, night, &pools))
                    .collect(),
            };
            let path = dir.join(format!("part-{part:05}-sim-{:08x}.parquet", opts.seed));
            write_parquet(&path, &batches)?;
            files.push(path);
            part += 1;
            in_night += n;
            written += n;
            progress(written);
        }
    }
    Ok(files)
}

#[allow(clippy::too_many_arguments)]
fn make_batch(
    schema: &Arc<Schema>,
    rng: &mut Rng,
    n: usize,
    candid: &mut i64,
    night: usize,
    cand_spec: &[(&str, char)],
    prv_spec: &[(&str, char)],
    pools: &[Vec<Vec<u8>>],
) -> anyhow::Result<RecordBatch> {
    let cand_fields = struct_fields(CANDIDATE);
    let prv_fields = struct_fields(PRV);
    let mut schemavsn = StringBuilder::new();
    let mut publisher = StringBuilder::new();
    let mut oid = StringBuilder::new();
    let mut cid = Int64Builder::new();
    let mut cand = StructBuilder::from_fields(cand_fields, n);
    let mut prv = ListBuilder::new(StructBuilder::from_fields(prv_fields.clone(), n * 10))
        .with_field(Arc::new(Field::new("element", DataType::Struct(prv_fields), true)));
    let mut cutouts: Vec<StructBuilder> = (0..3).map(|_| StructBuilder::from_fields(cutout_fields(), n)).collect();
    let mut ts = TimestampMicrosecondBuilder::new();
    let mut xmatch = StringBuilder::new();
    let mut roid = Int32Builder::new();
    let mut scores: Vec<Float64Builder> = (0..6).map(|_| Float64Builder::new()).collect();
    let mut nalert = Int32Builder::new();
    let mut version = StringBuilder::new();
    let mut tns = StringBuilder::new();
    let mut spicy_id = Int64Builder::new();
    let mut spicy_class = StringBuilder::new();
    let mut slopes = Float64Builder::new();
    for _ in 0..n {
        *candid += 1 + rng.below(1000) as i64;
        let jd = 2458849.5 + night as f64 + rng.range(0.1, 0.45);
        // Drawn apart from `rng`, so that the other columns of a seed stay
        // as they were before these were added.
        let mut extra = Rng::new(*candid as u64 ^ 0x5b1c_7e55);
        // A SPICY young stellar object (yso_spicy_candidates): its light
        // curve a line in time (the filter fits R²), its r-band slope steep.
        let spicy = extra.below(100) < 3;
        let slope = if spicy {
            extra.range(0.03, 0.12) * if extra.below(2) == 0 { 1.0 } else { -1.0 }
        } else {
            extra.normal(0.0, 0.01)
        };
        let mut a = Alert {
            object: object_id(rng, 20),
            candid: *candid,
            jd,
            ra: rng.range(0.0, 360.0),
            dec: rng.range(-30.0, 90.0),
            mag: rng.normal(19.0, 1.2).clamp(13.0, 22.5),
        };
        // A known magnetic cataclysmic variable now and then (magnetic_cvs).
        if extra.below(400) == 0 {
            let (ra, dec) = MAGNETIC_CVS[extra.below(MAGNETIC_CVS.len() as u64) as usize];
            (a.ra, a.dec) = (ra + extra.normal(0.0, 2e-5), dec + extra.normal(0.0, 2e-5));
        }
        schemavsn.append_value("3.3");
        publisher.append_value("Fink");
        oid.append_value(&a.object);
        cid.append_value(a.candid);
        append_struct(&mut cand, cand_spec, rng, &a, a.jd, a.mag);
        let hist = rng.below(31) as usize;
        for h in 0..hist {
            let mut mag = a.mag + rng.normal(0.0, 0.3);
            let jd = a.jd - (hist - h) as f64 * rng.range(0.5, 3.0);
            if spicy {
                mag = a.mag + slope * (jd - a.jd) + extra.normal(0.0, 0.02);
            }
            append_struct(prv.values(), prv_spec, rng, &a, jd, mag);
        }
        prv.append(true);
        for (k, c) in cutouts.iter_mut().enumerate() {
            let mut stamp = pools[k][rng.below(pools[k].len() as u64) as usize].clone();
            // The gzip header's MTIME (bytes 4..8): unique per alert, and
            // the stamp still decompresses to the same FITS image.
            stamp[4..8].copy_from_slice(&(a.candid as u32).to_le_bytes());
            c.field_builder::<StringBuilder>(0).unwrap().append_value(format!(
                "candid{}_pid{}_targ_{}.fits.gz",
                a.candid,
                k,
                ["sci", "ref", "diff"][k]
            ));
            c.field_builder::<BinaryBuilder>(1).unwrap().append_value(&stamp);
            c.append(true);
        }
        ts.append_value(((a.jd - 2440587.5) * 86_400_000_000.0) as i64);
        xmatch.append_value(pick(rng, XMATCH));
        // Asteroid flags: 3 known (MPC), 2 Fink's candidate, 1 first pass.
        roid.append_value(match rng.below(100) {
            0..=5 => 3,
            6..=8 => 2,
            9..=13 => 1,
            _ => 0,
        });
        // rf_snia_vs_nonia, snn_snia_vs_nonia, snn_sn_vs_all, mulens,
        // rf_kn_vs_nonkn, anomaly_score: classifier scores are mostly low,
        // missing when a module could not run; mulens is 0 but for a few.
        for (k, s) in scores.iter_mut().enumerate() {
            let v = match k {
                3 => match rng.below(100) {
                    0..=9 => None,
                    10..=13 => Some(rng.range(0.01, 1.0)),
                    _ => Some(0.0),
                },
                _ if rng.below(20) == 0 => None,
                _ => Some(rng.f64().powf(1.5)),
            };
            s.append_option(v);
        }
        // TNS name: empty for most, missing for some.
        tns.append_option(match rng.below(100) {
            0..=4 => None,
            5..=9 => Some(format!("SN 2020{}", object_id(rng, 20).trim_start_matches("ZTF20"))),
            _ => Some(String::new()),
        });
        nalert.append_value(1 + hist as i32);
        if spicy {
            spicy_id.append_value(extra.below(1_000_000) as i64 + 1);
            spicy_class.append_value(["ClassI", "ClassII", "FS", "ClassIII"][extra.below(4) as usize]);
        } else {
            spicy_id.append_value(-1);
            spicy_class.append_value("Unknown");
        }
        slopes.append_value(slope);
        version.append_value("3.1.0-sim");
    }
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(schemavsn.finish()),
        Arc::new(publisher.finish()),
        Arc::new(oid.finish()),
        Arc::new(cid.finish()),
        Arc::new(cand.finish()),
        Arc::new(prv.finish()),
    ];
    for mut c in cutouts {
        cols.push(Arc::new(c.finish()));
    }
    cols.push(Arc::new(ts.finish()));
    cols.push(Arc::new(xmatch.finish()));
    cols.push(Arc::new(roid.finish()));
    for mut s in scores {
        cols.push(Arc::new(s.finish()));
    }
    cols.push(Arc::new(nalert.finish()));
    cols.push(Arc::new(version.finish()));
    cols.push(Arc::new(tns.finish()));
    cols.push(Arc::new(spicy_id.finish()));
    cols.push(Arc::new(spicy_class.finish()));
    let slope_field = Arc::new(Field::new("linear_fit_slope", DataType::Float64, true));
    cols.push(Arc::new(arrow_array::StructArray::from(vec![(slope_field, Arc::new(slopes.finish()) as ArrayRef)])));
    Ok(RecordBatch::try_new(schema.clone(), cols)?)
}

/// Write then rename, so a watching `fink run` never sees half a file.
/// Pages carry CRC-32 checksums and the file an offset index, as Spark 3.x
/// (parquet-mr 1.12) writes them ([`crc`]): a reader that needs a few rows
/// fetches only their pages.
fn write_parquet(path: &Path, batches: &[RecordBatch]) -> anyhow::Result<()> {
    let tmp = path.with_extension("parquet.tmp");
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(256))
        .set_statistics_enabled(parquet::file::properties::EnabledStatistics::Chunk)
        // Pages close near parquet-mr's 1 MB, checked every few rows as it
        // does (the crate checks every 1,024 rows: one page per chunk here).
        .set_write_batch_size(16)
        .build();
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, batches[0].schema(), Some(props))?;
    for b in batches {
        w.write(b)?;
    }
    w.close()?;
    std::fs::write(&tmp, crc::with_page_checksums(buf)?)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_output_is_reproducible_and_alert_sized() {
        let d1 = tempfile::tempdir().unwrap();
        let d2 = tempfile::tempdir().unwrap();
        let o = |d: &Path| SimulateOptions {
            out: d.to_path_buf(),
            alerts: 30,
            seed: 7,
            per_file: 20,
            nights: 2,
            survey: Survey::Ztf,
        };
        let f1 = simulate(&o(d1.path()), &|_| {}).unwrap();
        let f2 = simulate(&o(d2.path()), &|_| {}).unwrap();
        assert_eq!(f1.len(), 2);
        for (a, b) in f1.iter().zip(&f2) {
            assert_eq!(std::fs::read(a).unwrap(), std::fs::read(b).unwrap(), "same seed, same bytes");
        }
        let (_, batches) = crate::stream::source::read_all(&f1[0], crate::config::SourceFormat::Parquet).unwrap();
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, 15);
        let size = std::fs::metadata(&f1[0]).unwrap().len() as usize / rows;
        assert!((30_000..200_000).contains(&size), "{size} bytes per alert");
        let stamp = fits_cutout(&mut Rng::new(1));
        assert!((9_000..20_000).contains(&stamp.len()), "cutout of {} bytes", stamp.len());
    }
}
